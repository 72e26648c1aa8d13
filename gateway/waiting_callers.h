// How many requests of each caller wait for reserved tokens on this replica, per limit (issue
// 14): the cap `max_waiting` keeps waiting from becoming a memory sink. A request takes a place
// before it asks the limiter (so two requests can never both take the last one) and gives it
// back when its wait ends, or at once when the limiter did not make it wait.
//
// Thread-safe: one mutex, held for one map lookup.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate::gateway {

class WaitingCallers {
 public:
  // The places one request holds; given back when Release()d or destroyed. Move-only.
  class Places {
   public:
    Places() = default;
    Places(Places&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), keys_(std::move(other.keys_)) {}
    Places& operator=(Places&& other) noexcept {
      if (this != &other) {
        Release();
        owner_ = std::exchange(other.owner_, nullptr);
        keys_ = std::move(other.keys_);
      }
      return *this;
    }
    Places(const Places&) = delete;
    Places& operator=(const Places&) = delete;
    ~Places() { Release(); }

    void Release() {
      if (owner_ != nullptr) {
        for (const std::string& key : keys_) owner_->Leave(key);
      }
      owner_ = nullptr;
      keys_.clear();
    }

   private:
    friend class WaitingCallers;
    WaitingCallers* owner_ = nullptr;
    std::vector<std::string> keys_;
  };

  // Takes a place under (`limit`, `caller`) into *places unless `max` are taken; false then.
  bool TryEnter(const std::string& limit, const std::string& caller, uint32_t max, Places* places) {
    std::string key = limit;
    key.append(1, '\0').append(caller);
    {
      std::lock_guard<std::mutex> lock(mu_);
      uint32_t& count = counts_[key];
      if (count >= max) {
        if (count == 0) counts_.erase(key);
        return false;
      }
      ++count;
    }
    places->owner_ = this;
    places->keys_.push_back(std::move(key));
    return true;
  }

  // Places taken under (`limit`, `caller`) now (tests).
  uint32_t count(const std::string& limit, const std::string& caller) const {
    std::string key = limit;
    key.append(1, '\0').append(caller);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  void Leave(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(key);
    if (it == counts_.end()) return;
    if (--it->second == 0) counts_.erase(it);  // idle callers cost nothing
  }

  mutable std::mutex mu_;
  std::unordered_map<std::string, uint32_t> counts_;
};

}  // namespace tollgate::gateway
