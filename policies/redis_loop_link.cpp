#include "policies/redis_loop_link.h"

#include <sys/epoll.h>

namespace tollgate::policies {

std::shared_ptr<RedisLoopLink> RedisLoopLink::Connect(loop::Loop* loop, const std::string& host,
                                                      int port, ReplyFn on_reply, LostFn on_lost,
                                                      std::atomic<uint64_t>* writes) {
  redisAsyncContext* context = redisAsyncConnect(host.c_str(), port);
  if (context == nullptr) return nullptr;
  if (context->err != 0) {
    redisAsyncFree(context);
    return nullptr;
  }
  std::shared_ptr<RedisLoopLink> link(
      new RedisLoopLink(loop, std::move(on_reply), std::move(on_lost), writes));
  RedisLoopLink* self = link.get();
  self->context_ = context;
  self->fd_ = context->c.fd;
  context->data = self;
  context->ev.data = self;
  context->ev.addRead = AddRead;
  context->ev.delRead = DelRead;
  context->ev.addWrite = AddWrite;
  context->ev.delWrite = DelWrite;
  context->ev.cleanup = Cleanup;
  // Watched with no events until the first Flush arms EPOLLOUT for the connect; the raw pointer
  // is safe: the fd is unwatched (Cleanup) before the link goes away.
  loop->Watch(self->fd_, 0, [self](uint32_t events) { self->OnEvents(events); });
  self->write_wanted_ = true;  // the connect completes on the first writable event
  return link;
}

RedisLoopLink::RedisLoopLink(loop::Loop* loop, ReplyFn on_reply, LostFn on_lost,
                             std::atomic<uint64_t>* writes)
    : loop_(loop), on_reply_(std::move(on_reply)), on_lost_(std::move(on_lost)), writes_(writes) {}

RedisLoopLink::~RedisLoopLink() {
  closing_ = true;
  // Runs the pending callbacks with a null reply (ignored: closing_) and then Cleanup.
  if (context_ != nullptr) redisAsyncFree(context_);
}

bool RedisLoopLink::Send(const std::vector<std::string>& argv) {
  if (!open()) return false;
  const char* pointers[64];
  size_t lengths[64];
  std::vector<const char*> many_pointers;
  std::vector<size_t> many_lengths;
  const char** p = pointers;
  size_t* l = lengths;
  if (argv.size() > 64) {
    many_pointers.resize(argv.size());
    many_lengths.resize(argv.size());
    p = many_pointers.data();
    l = many_lengths.data();
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    p[i] = argv[i].data();
    l[i] = argv[i].size();
  }
  return redisAsyncCommandArgv(context_, OnReply, nullptr, static_cast<int>(argv.size()), p, l) ==
         REDIS_OK;
}

void RedisLoopLink::Flush() {
  if (!open() || !write_wanted_ || epollout_) return;
  std::shared_ptr<RedisLoopLink> keep = shared_from_this();
  if (writes_ != nullptr && (context_->c.flags & REDIS_CONNECTED) != 0) writes_->fetch_add(1);
  ++in_hiredis_;
  redisAsyncHandleWrite(context_);
  --in_hiredis_;
  // Still wanting to write: the connect is in progress or the socket buffer is full.
  if (context_ != nullptr && write_wanted_) {
    epollout_ = true;
    UpdateInterest();
  }
  AfterHiredis();
}

void RedisLoopLink::Close() {
  if (closing_) return;
  closing_ = true;
  if (in_hiredis_ == 0 && context_ != nullptr) redisAsyncFree(context_);
}

void RedisLoopLink::OnEvents(uint32_t events) {
  if (context_ == nullptr || closing_) return;
  std::shared_ptr<RedisLoopLink> keep = shared_from_this();
  const bool connected = (context_->c.flags & REDIS_CONNECTED) != 0;
  if ((events & EPOLLOUT) != 0 || (!connected && (events & (EPOLLERR | EPOLLHUP)) != 0)) {
    // Writable (or the connect failed): the iteration hook's Flush writes, or reports the error.
    epollout_ = false;
    UpdateInterest();
  }
  if (connected && (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0) {
    ++in_hiredis_;
    redisAsyncHandleRead(context_);
    --in_hiredis_;
    AfterHiredis();
  }
}

void RedisLoopLink::UpdateInterest() {
  if (context_ == nullptr) return;
  const uint32_t mask = (reading_ ? EPOLLIN : 0u) | (epollout_ ? EPOLLOUT : 0u);
  if (mask == watched_mask_) return;
  watched_mask_ = mask;
  loop_->Modify(fd_, mask);
}

void RedisLoopLink::AfterHiredis() {
  if (in_hiredis_ > 0) return;
  if (closing_) {
    if (context_ != nullptr) redisAsyncFree(context_);
    return;
  }
  if (context_ == nullptr && !lost_reported_) {
    lost_reported_ = true;
    std::shared_ptr<RedisLoopLink> keep = shared_from_this();
    on_lost_();
  }
}

void RedisLoopLink::OnReply(redisAsyncContext* context, void* reply, void*) {
  auto* self = static_cast<RedisLoopLink*>(context->data);
  // A null reply: the context is going away (AfterHiredis reports it once, outside hiredis).
  if (self == nullptr || self->closing_ || reply == nullptr) return;
  self->on_reply_(*static_cast<redisReply*>(reply));
}

void RedisLoopLink::AddRead(void* self) {
  auto* link = static_cast<RedisLoopLink*>(self);
  link->reading_ = true;
  link->UpdateInterest();
}

void RedisLoopLink::DelRead(void* self) {
  auto* link = static_cast<RedisLoopLink*>(self);
  link->reading_ = false;
  link->UpdateInterest();
}

// hiredis calls this for every queued command; the write itself waits for Flush.
void RedisLoopLink::AddWrite(void* self) {
  static_cast<RedisLoopLink*>(self)->write_wanted_ = true;
}

void RedisLoopLink::DelWrite(void* self) {
  auto* link = static_cast<RedisLoopLink*>(self);
  link->write_wanted_ = false;
  link->epollout_ = false;
  link->UpdateInterest();
}

// The context is being freed (by us or by hiredis after an error): forget the fd before hiredis
// closes it.
void RedisLoopLink::Cleanup(void* self) {
  auto* link = static_cast<RedisLoopLink*>(self);
  if (link->fd_ >= 0) link->loop_->Unwatch(link->fd_);
  link->fd_ = -1;
  link->context_ = nullptr;
}

}  // namespace tollgate::policies
