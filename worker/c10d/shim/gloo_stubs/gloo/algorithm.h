#pragma once
// Declaration-only stand-in; see gloo_stubs/README.md.
