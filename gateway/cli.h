// The `tollgate` command line: serve, check-config, keygen, explain (see kUsage in cli.cpp).
#pragma once

namespace tollgate::gateway {

// Returns the process exit code: 0 ok, 1 failure (or a denied `explain`), 2 usage/config error.
int RunCli(int argc, char** argv);

}  // namespace tollgate::gateway
