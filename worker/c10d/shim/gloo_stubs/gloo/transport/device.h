#pragma once
// Declaration-only stand-in; see gloo_stubs/README.md.

namespace gloo {
namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport
} // namespace gloo
