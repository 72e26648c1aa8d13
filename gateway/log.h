// Operational log lines on stderr: `2026-11-25T12:00:00.123Z level message`. Never pass a
// secret, a key or a request body here. Thread-safe (one write(2) per line).
#pragma once

#include <string_view>

namespace tollgate::gateway {

enum class LogLevel { kInfo, kWarn, kError };

void Log(LogLevel level, std::string_view message);
inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarn(std::string_view m) { Log(LogLevel::kWarn, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }

}  // namespace tollgate::gateway
