#include "lb/common/mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace lb::common {

EventFd::EventFd() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

EventFd::~EventFd() { close(fd_); }

void EventFd::Notify() {
  const uint64_t one = 1;
  // Fails only when the counter would overflow: it is readable then anyway.
  const ssize_t ignored = write(fd_, &one, sizeof one);
  (void)ignored;
}

void EventFd::Drain() {
  uint64_t count = 0;
  const ssize_t ignored = read(fd_, &count, sizeof count);
  (void)ignored;
}

}  // namespace lb::common
