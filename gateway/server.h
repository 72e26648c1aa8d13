// `tollgate serve`: loads the config, starts the front-end and admin listeners, and runs
// until SIGTERM/SIGINT (graceful drain) while SIGHUP or POST /reload swap in a new config.
#pragma once

#include <string>

namespace tollgate::gateway {

struct ServeOptions {
  std::string config_path;
};

// Returns the process exit code: 0 after a clean shutdown, 2 for a bad config, 1 otherwise.
int RunServe(const ServeOptions& options);

}  // namespace tollgate::gateway
