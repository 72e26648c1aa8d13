// The fake upstream's HTTP server: Pistache 0.0.5 on 127.0.0.1, serving the Devin model, the Devo
// model and the /_fake/ control endpoints on one port, distinguished by path.
//
// Every API request is recorded with its raw request head (query and headers byte for byte, in
// order, repeats kept), then answered by its model, then changed by a behaviour rule (forced
// status, Retry-After, replacement body or Content-Type, extra headers) and, when a rule says
// so, answered later: from a timer thread (a delay) or when a test posts /_fake/release (a
// hold), so that no Pistache thread ever waits. A request with `fake_stream=...` in its query
// gets a streamed answer instead (fake_stream.h), written on the connection's socket by the
// streamer thread; GET/DELETE /_fake/streams report and forget what each stream did.
//
// Thread-safety: Start/port/Shutdown from one thread; the server runs on its own threads.
#pragma once

#include <memory>
#include <string>

#include "tests/fakes/fake_devo.h"

namespace tollgate::fake {

struct FakeServerOptions {
  int port = 0;  // required, 1-65535 (Location URLs name it)
  int threads = 2;
  std::string devin_token;
  DevoCredentials devo;
};

class FakeServer {
 public:
  // Binds 127.0.0.1:options.port and serves; nullptr and *error when it cannot.
  static std::unique_ptr<FakeServer> Start(const FakeServerOptions& options, std::string* error);
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  int port() const;
  // Drops answers still waiting on a delay, then stops Pistache. Idempotent.
  void Shutdown();

  struct Impl;

 private:
  explicit FakeServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tollgate::fake
