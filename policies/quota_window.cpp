#include "policies/quota_window.h"

namespace tollgate::policies {
namespace {

constexpr int64_t kSecondsPerDay = 86400;

// floor(a / b) for b > 0 (C++ division truncates towards zero).
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); }

// Year and month of day `z` since 1970-01-01 (H. Hinnant's civil_from_days).
void CivilFromDays(int64_t z, int64_t* y, int64_t* m) {
  z += 719468;
  const int64_t era = FloorDiv(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yoe + era * 400 + (*m <= 2 ? 1 : 0);
}

}  // namespace

int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = FloorDiv(y, 400);
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

QuotaWindow QuotaWindowAt(config::QuotaPeriod period, int reset_hour_utc, int64_t now_s) {
  const int64_t offset = int64_t{reset_hour_utc} * 3600;
  const int64_t day = FloorDiv(now_s - offset, kSecondsPerDay);  // shifted day number
  int64_t first = day;
  int64_t next = day + 1;
  switch (period) {
    case config::QuotaPeriod::kDay:
      break;
    case config::QuotaPeriod::kWeek:
      // 1970-01-01 was a Thursday: Monday is weekday 0.
      first = day - ((day + 3) % 7 + 7) % 7;
      next = first + 7;
      break;
    case config::QuotaPeriod::kMonth: {
      int64_t y = 0;
      int64_t m = 0;
      CivilFromDays(day, &y, &m);
      first = DaysFromCivil(y, m, 1);
      next = m == 12 ? DaysFromCivil(y + 1, 1, 1) : DaysFromCivil(y, m + 1, 1);
      break;
    }
  }
  return QuotaWindow{first * kSecondsPerDay + offset, next * kSecondsPerDay + offset};
}

}  // namespace tollgate::policies
