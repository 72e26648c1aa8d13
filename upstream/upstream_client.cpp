#include "upstream/upstream_client.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "loop/loop.h"
#include "upstream/stream_client.h"

namespace tollgate::upstream {
namespace {

using Error = UpstreamResponse::Error;

// A body larger than this is still accepted; only the up-front reservation is capped, so a
// hostile Content-Length cannot make the gateway allocate gigabytes before any byte arrives.
constexpr size_t kMaxReserve = size_t{16} << 20;

bool NameIs(const std::string& name, const char* lower) {
  size_t n = std::char_traits<char>::length(lower);
  if (name.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

Error ToError(StreamEndReason reason) {
  switch (reason) {
    case StreamEndReason::kComplete:
      return Error::kNone;
    case StreamEndReason::kTimeout:
    case StreamEndReason::kMaxDuration:
    case StreamEndReason::kReadIdleTimeout:
      return Error::kTimeout;
    case StreamEndReason::kConnect:
      return Error::kConnect;
    case StreamEndReason::kShutdown:
      return Error::kShutdown;
    default:
      return Error::kOther;
  }
}

// One loop thread and its StreamClient (made, used and destroyed on that thread).
struct Worker {
  std::unique_ptr<loop::LoopThread> thread;
  std::unique_ptr<StreamClient> client;  // loop thread only; null once shut down
};

}  // namespace

struct UpstreamClient::Impl {
  UpstreamClientOptions options;
  UpstreamClientStats stats;
  std::atomic<size_t> in_flight{0};
  std::atomic<size_t> next{0};
  // Send() counts itself in `sending` before it reads `stopping`; the destructor sets
  // `stopping` and then waits for `sending` to drain, so no Send() touches `workers` once the
  // destructor starts taking them down (the vector itself never changes before ~Impl).
  std::atomic<int> sending{0};
  std::atomic<bool> stopping{false};
  std::vector<std::unique_ptr<Worker>> workers;
};

namespace {

// A Send(): the sink that buffers one response on its loop thread, then answers and deletes
// itself.
class BufferedCall final : public StreamSink {
 public:
  BufferedCall(UpstreamClientStats* stats, std::atomic<size_t>* in_flight, uint64_t max_bytes,
               UpstreamRequest request, std::function<void(UpstreamResponse)> done)
      : stats_(stats),
        in_flight_(in_flight),
        max_bytes_(max_bytes),
        request_(std::move(request)),
        done_(std::move(done)) {}

  void Run(StreamClient* client) {
    client_ = client;
    head_ = request_.method == "HEAD";
    // For Send() timeout_ms bounds the whole transfer, as it always did.
    request_.max_duration_ms = request_.timeout_ms > 0 ? request_.timeout_ms : 0;
    StreamClient::TransferId id = client->Start(std::move(request_), this);
    if (id != 0) id_ = id;  // 0: it ended inline and `this` is gone
  }

  // The loop is gone or going: answered on the calling thread.
  void Shutdown() {
    stats_->started.fetch_add(1, std::memory_order_relaxed);
    StreamEnd end;
    end.reason = StreamEndReason::kShutdown;
    end.error_message = "upstream client is shutting down";
    OnEnd(end);
  }

  void OnHeaders(int status, HeaderList headers) override {
    response_.status = status;
    response_.headers = std::move(headers);
    if (head_) return;
    for (const auto& [name, value] : response_.headers) {
      if (NameIs(name, "content-length")) {
        uint64_t declared = std::strtoull(value.c_str(), nullptr, 10);
        response_.body.reserve(
            static_cast<size_t>(std::min<uint64_t>({declared, max_bytes_, uint64_t{kMaxReserve}})));
      }
    }
  }

  bool OnData(const char* data, size_t len) override {
    if (response_.body.size() + len > max_bytes_) {
      too_large_ = true;
      // OnEnd runs inside Abort and deletes this call: nothing of `this` is touched after it.
      client_->Abort(id_);
      return false;
    }
    response_.body.append(data, len);
    return true;
  }

  void OnEnd(const StreamEnd& end) override {
    UpstreamResponse out = std::move(response_);
    out.total_ms = end.total_ms;
    if (end.reason != StreamEndReason::kComplete) {
      out.error = too_large_ ? Error::kTooLarge : ToError(end.reason);
      out.error_message = too_large_
                              ? "response body larger than " + std::to_string(max_bytes_) + " bytes"
                              : end.error_message;
      out.status = 0;
      out.headers.clear();
      out.body.clear();
      // The stream client does not count aborts; an oversize body is an upstream error.
      if (too_large_) stats_->other_errors.fetch_add(1, std::memory_order_relaxed);
    }
    auto done = std::move(done_);
    std::atomic<size_t>* in_flight = in_flight_;
    delete this;
    done(std::move(out));
    in_flight->fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  UpstreamClientStats* stats_;
  std::atomic<size_t>* in_flight_;
  uint64_t max_bytes_;
  UpstreamRequest request_;
  std::function<void(UpstreamResponse)> done_;
  StreamClient* client_ = nullptr;
  StreamClient::TransferId id_ = 0;
  UpstreamResponse response_;
  bool head_ = false;
  bool too_large_ = false;
};

}  // namespace

UpstreamClient::UpstreamClient(UpstreamClientOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  int threads = std::max(1, impl_->options.threads);
  for (int i = 0; i < threads; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->thread = std::make_unique<loop::LoopThread>("tollgate-curl");
    Worker* w = worker.get();
    Impl* impl = impl_.get();
    w->thread->RunSync([w, impl] {
      w->client = std::make_unique<StreamClient>(&w->thread->loop(), impl->options, &impl->stats);
    });
    impl_->workers.push_back(std::move(worker));
  }
}

UpstreamClient::~UpstreamClient() {
  impl_->stopping.store(true);
  while (impl_->sending.load() != 0) std::this_thread::yield();
  // Each client ends its transfers (kShutdown) on its own thread; a `done` that sends again is
  // answered kShutdown inline. Then the loops stop: requests posted before that run and find no
  // client (kShutdown).
  for (auto& w : impl_->workers) {
    Worker* worker = w.get();
    worker->thread->RunSync([worker] { worker->client.reset(); });
  }
  for (auto& w : impl_->workers) w->thread.reset();
}

void UpstreamClient::Send(UpstreamRequest request, std::function<void(UpstreamResponse)> done) {
  Impl* impl = impl_.get();
  impl->in_flight.fetch_add(1, std::memory_order_relaxed);
  auto* call = new BufferedCall(&impl->stats, &impl->in_flight, impl->options.max_response_bytes,
                                std::move(request), std::move(done));
  impl->sending.fetch_add(1);
  if (impl->stopping.load()) {
    impl->sending.fetch_sub(1);
    call->Shutdown();
    return;
  }
  Worker* w =
      impl->workers[impl->next.fetch_add(1, std::memory_order_relaxed) % impl->workers.size()]
          .get();
  bool posted = w->thread->loop().Post([w, call] {
    if (w->client != nullptr) {
      call->Run(w->client.get());
    } else {
      call->Shutdown();
    }
  });
  impl->sending.fetch_sub(1);
  if (!posted) call->Shutdown();
}

size_t UpstreamClient::in_flight() const {
  return impl_->in_flight.load(std::memory_order_relaxed);
}

const UpstreamClientStats& UpstreamClient::stats() const { return impl_->stats; }

}  // namespace tollgate::upstream
