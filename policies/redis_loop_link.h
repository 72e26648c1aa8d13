// One hiredis async connection driven by a loop::Loop: the adapter between hiredis's event hooks
// (addRead/delRead/addWrite/delWrite/cleanup) and the loop's Watch/Modify/Unwatch.
//
// Writes are batched: a command only lands in hiredis's output buffer, and Flush() (which the
// owner calls from the loop's iteration hook) writes the buffer once, so every command queued in
// one loop iteration goes out in one write. EPOLLOUT is armed only while a connect is in progress
// or a write could not finish; when it fires, the next Flush() writes.
//
// Replies reach `on_reply` in the order the commands were sent (the owner keeps its own FIFO).
// `on_lost` runs once when the connection fails by itself (connect refused, EOF, I/O error), never
// inside a hiredis callback and never after Close(). Close() may be called from `on_reply`.
//
// Not thread-safe: everything runs on the loop's thread (or, for destruction, on whichever thread
// destroys the loop's locals once it no longer runs).
#pragma once

#include <hiredis/async.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loop/loop.h"

namespace tollgate::policies {

class RedisLoopLink : public std::enable_shared_from_this<RedisLoopLink> {
 public:
  using ReplyFn = std::function<void(const redisReply& reply)>;
  using LostFn = std::function<void()>;

  // Starts a non-blocking connect; null when it failed at once (nothing will be called back).
  // `writes` (may be null) counts Flush() calls that handed bytes to the socket.
  static std::shared_ptr<RedisLoopLink> Connect(loop::Loop* loop, const std::string& host, int port,
                                                ReplyFn on_reply, LostFn on_lost,
                                                std::atomic<uint64_t>* writes);
  // Frees the hiredis context without calling back.
  ~RedisLoopLink();
  RedisLoopLink(const RedisLoopLink&) = delete;
  RedisLoopLink& operator=(const RedisLoopLink&) = delete;

  // Queues one command (written by the next Flush). False once closed or lost.
  bool Send(const std::vector<std::string>& argv);
  // Writes what is queued, unless a connect or an unfinished write is waiting on EPOLLOUT.
  void Flush();
  // Drops the connection; replies still buffered are discarded, nothing is called back.
  void Close();
  bool open() const { return context_ != nullptr && !closing_; }

 private:
  RedisLoopLink(loop::Loop* loop, ReplyFn on_reply, LostFn on_lost, std::atomic<uint64_t>* writes);

  static void OnReply(redisAsyncContext* context, void* reply, void* privdata);
  static void AddRead(void* self);
  static void DelRead(void* self);
  static void AddWrite(void* self);
  static void DelWrite(void* self);
  static void Cleanup(void* self);

  void OnEvents(uint32_t events);
  void UpdateInterest();
  // After any call into hiredis: a requested Close() happens now, a lost connection is reported.
  void AfterHiredis();

  loop::Loop* const loop_;
  const ReplyFn on_reply_;
  const LostFn on_lost_;
  std::atomic<uint64_t>* const writes_;
  redisAsyncContext* context_ = nullptr;  // null once hiredis freed it
  int fd_ = -1;
  bool reading_ = false;       // hiredis wants EPOLLIN
  bool write_wanted_ = false;  // hiredis has output (or a connect) pending
  bool epollout_ = false;      // EPOLLOUT armed: Flush waits for it
  uint32_t watched_mask_ = 0;  // what the loop watches now
  bool closing_ = false;       // Close() called: no more callbacks
  int in_hiredis_ = 0;         // inside redisAsyncHandleRead/Write
  bool lost_reported_ = false;
};

}  // namespace tollgate::policies
