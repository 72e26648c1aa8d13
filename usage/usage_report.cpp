#include "usage/usage_report.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "config/syntax.h"

namespace tollgate::usage {
namespace {

constexpr int64_t kDefaultDays = 30;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding ('+' is a space, as in a form); false on a bad escape.
bool Decode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out->push_back(' ');
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out->push_back(in[i]);
    }
  }
  return true;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void String(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

}  // namespace

std::string ParseUsageQuery(std::string_view raw, int64_t today, int retention_days,
                            UsageQuery* out) {
  UsageQuery q;
  std::optional<int64_t> from, to;
  std::string error = config::syntax::ForEachQueryParam(
      raw, [&](std::string_view name, std::string_view encoded) -> std::string {
        std::string value;
        if (!Decode(encoded, &value)) return std::string(name) + ": bad percent-encoding";
        if (name == "from" || name == "to") {
          std::optional<int64_t> day = ParseDay(value);
          if (!day) return std::string(name) + ": not a date (YYYY-MM-DD, a UTC day)";
          (name == "from" ? from : to) = day;
        } else if (name == "caller") {
          q.caller = value;
        } else if (name == "upstream") {
          q.upstream = value;
        } else if (name == "group_by") {
          q.group_by.clear();
          std::string_view list = value;
          while (true) {
            const size_t comma = list.find(',');
            const std::string_view item = list.substr(0, comma);
            if (item != "day" && item != "caller" && item != "upstream") {
              return "group_by: a comma list of day, caller and upstream";
            }
            if (std::find(q.group_by.begin(), q.group_by.end(), item) != q.group_by.end()) {
              return "group_by: names " + std::string(item) + " twice";
            }
            q.group_by.emplace_back(item);
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
          }
        } else if (name == "format") {
          if (value != "json" && value != "csv") return "format: json or csv";
          q.csv = value == "csv";
        }
        // Other parameters (a cache-buster, say) are ignored.
        return "";
      });
  if (!error.empty()) return error;
  q.to = to ? *to : (from ? std::max(*from, today) : today);
  q.from = from ? *from : q.to - (kDefaultDays - 1);
  if (q.from > q.to) return "from: after to";
  if (q.to - q.from >= retention_days) {
    return (from ? std::string("from") : std::string("to")) +
           ": from and to are more than retention_days (" + std::to_string(retention_days) +
           ") apart";
  }
  *out = std::move(q);
  return "";
}

std::vector<UsageRow> BuildUsageRows(const UsageQuery& query, const UsageTable& table) {
  std::map<std::vector<std::string>, UsageCounts> grouped;
  for (const auto& [key, counts] : table) {
    const auto& [day, caller, upstream] = key;
    if (day < query.from || day > query.to) continue;
    if (!query.caller.empty() && caller != query.caller) continue;
    if (!query.upstream.empty() && upstream != query.upstream) continue;
    std::vector<std::string> keys;
    for (const auto& g : query.group_by) {
      keys.push_back(g == "day" ? FormatDay(day) : g == "caller" ? caller : upstream);
    }
    grouped[std::move(keys)].Add(counts);
  }
  std::vector<UsageRow> rows;
  rows.reserve(grouped.size());
  for (auto& [keys, counts] : grouped) rows.push_back({keys, std::move(counts)});
  return rows;
}

std::string UsageJson(const UsageQuery& query, const std::vector<UsageRow>& rows) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("from");
  String(w, FormatDay(query.from));
  w.Key("to");
  String(w, FormatDay(query.to));
  w.Key("group_by");
  w.StartArray();
  for (const auto& g : query.group_by) String(w, g);
  w.EndArray();
  w.Key("items");
  w.StartArray();
  for (const auto& row : rows) {
    w.StartObject();
    for (size_t i = 0; i < query.group_by.size(); ++i) {
      String(w, query.group_by[i]);
      String(w, row.keys[i]);
    }
    for (size_t i = kRequests; i <= kBytesOut; ++i) {
      String(w, kCounterNames[i]);
      w.Int64(row.counts.n[i]);
    }
    w.Key("status");
    w.StartObject();
    for (size_t i = kStatus2xx; i <= kStatus5xx; ++i) {
      if (row.counts.n[i] == 0) continue;
      String(w, kCounterNames[i].substr(7));  // "2xx"
      w.Int64(row.counts.n[i]);
    }
    w.EndObject();
    w.Key("cost");
    w.StartObject();
    for (const auto& [name, n] : row.counts.cost) {
      String(w, name);
      w.Int64(n);
    }
    w.EndObject();
    if (!row.counts.unauthenticated_keys.empty()) {
      w.Key("unauthenticated_keys");
      w.StartObject();
      for (const auto& [id, n] : row.counts.unauthenticated_keys) {
        String(w, id);
        w.Int64(n);
      }
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return buf.GetString();
}

std::string CsvField(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string UsageCsv(const UsageQuery& query, const std::vector<UsageRow>& rows) {
  std::set<std::string> costs;
  for (const auto& row : rows) {
    for (const auto& [name, n] : row.counts.cost) costs.insert(name);
  }
  std::string out;
  auto line = [&out](const std::vector<std::string>& fields) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += CsvField(fields[i]);
    }
    out += "\r\n";
  };
  std::vector<std::string> header = query.group_by;
  for (auto name : kCounterNames) header.emplace_back(name);
  for (const auto& c : costs) header.push_back("cost:" + c);
  line(header);
  for (const auto& row : rows) {
    std::vector<std::string> fields = row.keys;
    for (int64_t n : row.counts.n) fields.push_back(std::to_string(n));
    for (const auto& c : costs) {
      auto it = row.counts.cost.find(c);
      fields.push_back(std::to_string(it == row.counts.cost.end() ? 0 : it->second));
    }
    line(fields);
  }
  return out;
}

std::string FormatUsageTable(std::string_view json, std::string* error) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("items") ||
      !doc["items"].IsArray() || !doc.HasMember("group_by") || !doc["group_by"].IsArray()) {
    *error = "not a usage answer ({\"group_by\": [...], \"items\": [...]})";
    return "";
  }
  std::vector<std::string> keys;
  for (const auto& g : doc["group_by"].GetArray()) {
    if (g.IsString()) keys.emplace_back(g.GetString());
  }
  auto text = [](const rapidjson::Value& item, const char* name) -> std::string {
    auto it = item.FindMember(name);
    if (it == item.MemberEnd()) return "-";
    if (it->value.IsString()) return it->value.GetString();
    if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
    return "-";
  };
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header;
  for (const auto& k : keys) {
    std::string upper = k;
    for (char& c : upper) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
    header.push_back(upper);
  }
  for (const char* h : {"REQUESTS", "ALLOWED", "FORBIDDEN", "RATE_LIMITED", "UNAUTH", "ERRORS",
                        "BYTES_IN", "BYTES_OUT", "COST"}) {
    header.emplace_back(h);
  }
  rows.push_back(header);
  for (const auto& item : doc["items"].GetArray()) {
    if (!item.IsObject()) continue;
    std::vector<std::string> row;
    for (const auto& k : keys) row.push_back(text(item, k.c_str()));
    for (const char* f : {"requests", "allowed", "forbidden", "rate_limited", "unauthenticated",
                          "errors", "bytes_in", "bytes_out"}) {
      row.push_back(text(item, f));
    }
    std::string cost;
    if (auto c = item.FindMember("cost"); c != item.MemberEnd() && c->value.IsObject()) {
      for (const auto& m : c->value.GetObject()) {
        if (!m.value.IsInt64()) continue;
        cost += (cost.empty() ? "" : " ") + std::string(m.name.GetString()) + "=" +
                std::to_string(m.value.GetInt64());
      }
    }
    row.push_back(cost.empty() ? "-" : cost);
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      // Control characters from the answer are not passed to the terminal.
      for (char c : row[i]) out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
      if (i + 1 < row.size()) out.append(widths[i] - row[i].size() + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace tollgate::usage
