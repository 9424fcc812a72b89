#pragma once
// Declaration-only stand-in; see gloo_stubs/README.md.
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
