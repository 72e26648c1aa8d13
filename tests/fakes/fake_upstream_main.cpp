// fake_upstream: a stand-in for the Devin enterprise API and the Devo APIs, for tollgate's
// integration tests. See fake_server.h for what it serves and tests/support/harness.h for how
// tests drive it.
//
// Usage: fake_upstream --listen 127.0.0.1:PORT [--devin-token T] [--devo-token T]
//                      [--devo-hmac-key K --devo-hmac-secret S]
// Tokens may also come from FAKE_DEVIN_TOKEN, FAKE_DEVO_TOKEN, FAKE_DEVO_HMAC_KEY and
// FAKE_DEVO_HMAC_SECRET (so they need not appear in a process listing). SIGINT/SIGTERM: exit 0.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/fakes/fake_server.h"

namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --listen 127.0.0.1:PORT [--devin-token T] [--devo-token T] "
               "[--devo-hmac-key K --devo-hmac-secret S]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  tollgate::fake::FakeServerOptions options;
  options.devin_token = Env("FAKE_DEVIN_TOKEN");
  options.devo.token = Env("FAKE_DEVO_TOKEN");
  options.devo.hmac_key = Env("FAKE_DEVO_HMAC_KEY");
  options.devo.hmac_secret = Env("FAKE_DEVO_HMAC_SECRET");
  std::string listen;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(argv[0]);
    std::string value = argv[++i];
    if (flag == "--listen") {
      listen = value;
    } else if (flag == "--devin-token") {
      options.devin_token = value;
    } else if (flag == "--devo-token") {
      options.devo.token = value;
    } else if (flag == "--devo-hmac-key") {
      options.devo.hmac_key = value;
    } else if (flag == "--devo-hmac-secret") {
      options.devo.hmac_secret = value;
    } else {
      return Usage(argv[0]);
    }
  }
  const std::string host = "127.0.0.1:";
  if (listen.compare(0, host.size(), host) != 0) return Usage(argv[0]);
  char* end = nullptr;
  long port = std::strtol(listen.c_str() + host.size(), &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) return Usage(argv[0]);
  options.port = static_cast<int>(port);

  // Block the stop signals before Pistache starts its threads, so only sigwait() sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Thousands of open streams hold two descriptors each (Pistache's and the streamer's dup).
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  std::string error;
  auto server = tollgate::fake::FakeServer::Start(options, &error);
  if (!server) {
    std::fprintf(stderr, "fake_upstream: %s: %s\n", listen.c_str(), error.c_str());
    return 1;
  }
  std::printf("fake_upstream listening on 127.0.0.1:%d\n", server->port());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server->Shutdown();
  return 0;
}
