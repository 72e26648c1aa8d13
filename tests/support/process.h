// Child processes for tests: spawn a real binary, wait until it listens, always stop it.
//
// Every ChildProcess is stopped by its destructor (SIGTERM, then SIGKILL after a grace period)
// and is placed in its own process group, so a failing test never leaves a server behind. The
// children also get PR_SET_PDEATHSIG, so even a test binary killed by a signal takes them along.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace tollgate::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close), and that
// no other test process on this machine was handed (a lock-file registry in /tmp).
int FreePort();

// True once something accepts TCP connections on 127.0.0.1:port, false after `timeout`.
bool WaitForPort(int port, std::chrono::milliseconds timeout);

class ChildProcess {
 public:
  ChildProcess() = default;
  // argv[0] is the binary's path. `env` entries are added to (and override) the environment.
  // stdout/stderr go to `log_path` when given (appended), else are inherited.
  ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
               std::string log_path = "");
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int signo);
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status as from waitpid
  // (use WIFEXITED/WEXITSTATUS), or -1 if it was not running.
  int Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  // Waits for the process to exit by itself; -1 on timeout (it is left running).
  int Wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// Runs a command to completion, capturing stdout+stderr. Returns the exit code (or 128+signal).
int RunCommand(const std::vector<std::string>& argv, std::string* output,
               const std::map<std::string, std::string>& env = {},
               std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

// A scratch directory removed (recursively) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& content) const;  // returns the path

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);

struct RedisServerOptions {
  std::string password;  // non-empty: `--requirepass` (clients must AUTH with it)
  // Appended to the command line, e.g. {"--replicaof", "127.0.0.1", "6380"} or cluster mode's
  // {"--cluster-enabled", "yes", ...}; a later option wins over the defaults.
  std::vector<std::string> extra_args;
  std::string log_path = "/dev/null";  // where its output goes
};

// redis-server on a free loopback port with no persistence.
class RedisServer {
 public:
  RedisServer();  // starts it and waits until it answers; ADD_FAILURE()s if it cannot
  explicit RedisServer(RedisServerOptions options);
  int port() const { return port_; }
  std::string url() const;  // redis://127.0.0.1:<port>/0
  void Stop();              // kills it (SIGKILL: like a crash)
  void Start();             // starts it again on the same port (empty: no persistence)
  bool running();
  pid_t pid() const { return process_.pid(); }  // SIGSTOP/SIGCONT: a Redis that goes silent

 private:
  int port_;
  bool started_once_ = false;
  RedisServerOptions options_;
  // Its working directory for files (a replica writes the RDB it receives even with no `save`):
  // never the directory the tests run in. Outlives the process.
  TempDir dir_;
  ChildProcess process_;
};

}  // namespace tollgate::testing
