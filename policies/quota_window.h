// Calendar windows of a quota (issue 12): fixed UTC days, weeks starting on Monday and months
// starting on the 1st, each shifted by `reset_hour_utc` (the window starts at that hour).
//
// Pure functions on values: the clock is the caller's (tests inject any instant). The Redis
// script (token_bucket_script.cpp) computes the same windows from Redis TIME, step for step.
#pragma once

#include <cstdint>

#include "config/model.h"

namespace tollgate::policies {

struct QuotaWindow {
  int64_t start_s = 0;  // Unix seconds, inclusive
  int64_t end_s = 0;    // Unix seconds, exclusive: the instant of the next reset
};

// Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12; d may be 1..31).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d);

// The window holding `now_s` (Unix seconds).
QuotaWindow QuotaWindowAt(config::QuotaPeriod period, int reset_hour_utc, int64_t now_s);

}  // namespace tollgate::policies
