// pistache_hello: a bare Pistache 0.0.5 server that answers every request at once with a fixed
// small JSON body. The benchmark (tests/bench/run.sh) uses it as the ceiling of the front-end
// library: tollgate can never be faster than Pistache doing no work at all.
//
// Usage: pistache_hello PORT THREADS   (binds 127.0.0.1 only; SIGINT/SIGTERM stop it)
//
// Thread-safety: the handler is stateless; Pistache clones it per reactor thread.
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/http_headers.h>
#include <pistache/net.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr char kBody[] = "{\"hello\":\"world\",\"ok\":true}";

class HelloHandler : public Pistache::Http::Handler {
 public:
  HTTP_PROTOTYPE(HelloHandler)

  void onRequest(const Pistache::Http::Request& request,
                 Pistache::Http::ResponseWriter response) override {
    using Pistache::Http::ConnectionControl;
    namespace Header = Pistache::Http::Header;
    // Pistache answers "Connection: Close" to any request without an explicit keep-alive, which
    // is most HTTP/1.1 clients; HTTP/1.1 is persistent by default, so restore that, or the
    // benchmark would measure TCP handshakes instead of the library (~13k vs ~58k req/s).
    if (request.version() == Pistache::Http::Version::Http11 &&
        !request.headers().has<Header::Connection>()) {
      response.headers().remove<Header::Connection>();
      response.headers().add<Header::Connection>(ConnectionControl::KeepAlive);
    }
    response.headers().add<Header::ContentType>(MIME(Application, Json));
    response.send(Pistache::Http::Code::Ok, kBody).then([](ssize_t) {}, [](std::exception_ptr) {});
  }
};

int ParsePositive(const char* text, int max) {
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value <= 0 || value > max) return -1;
  return static_cast<int>(value);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s PORT THREADS\n", argv[0]);
    return 2;
  }
  const int port = ParsePositive(argv[1], 65535);
  const int threads = ParsePositive(argv[2], 256);
  if (port < 0 || threads < 0) {
    std::fprintf(stderr, "pistache_hello: PORT must be 1-65535 and THREADS 1-256\n");
    return 2;
  }

  // Block the stop signals before Pistache starts its threads, so only sigwait() sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Pistache::Address address(Pistache::Ipv4::loopback(),
                            Pistache::Port(static_cast<uint16_t>(port)));
  Pistache::Http::Endpoint endpoint(address);
  auto options =
      Pistache::Http::Endpoint::options().threads(threads).flags(Pistache::Tcp::Options::ReuseAddr);
  endpoint.init(options);
  endpoint.setHandler(Pistache::Http::make_handler<HelloHandler>());
  try {
    endpoint.serveThreaded();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pistache_hello: cannot listen on 127.0.0.1:%d: %s\n", port, e.what());
    return 1;
  }
  std::fprintf(stderr, "pistache_hello: listening on 127.0.0.1:%d with %d threads\n", port,
               threads);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  endpoint.shutdown();
  return 0;
}
