// A small C ABI over libtorch's c10d: TCPStore rendezvous, ProcessGroupGloo and (with
// ARL_WITH_NCCL) ProcessGroupNCCL, and the collectives the trainer needs.
//
// Contract for every entry point: it never throws and never aborts. It returns NULL on
// success, or a malloc'd, NUL-terminated error message that the caller frees with
// arl_c10d_free_error. Tensors arrive as tch handles (`at::Tensor*`); copying an
// at::Tensor shares its storage, so collectives work in place on the Rust tensors.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef ARL_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "common.h"

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

using arl_shim::dup_message;
using arl_shim::guarded;
using arl_shim::wait_all;

extern "C" {

void arl_c10d_free_error(char* error) {
  std::free(error);
}

char* arl_c10d_init_logging() {
  return guarded([] { c10::initLogging(); });
}

char* arl_store_create(
    const char* host,
    uint16_t port,
    int32_t world_size,
    bool is_server,
    int64_t timeout_ms,
    arl_store** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<size_t>(world_size);
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new arl_store{tcp};
  });
}

void arl_store_free(arl_store* store) {
  delete store;
}

// The run token handshake: the server writes `token` under `key`; every rank (the server too)
// reads it back (waiting up to the store's timeout) and fails if it is another run's.
char* arl_store_check_token(arl_store* store, const char* key, const char* token, bool is_server) {
  return guarded([&] {
    std::string ours(token);
    if (is_server) {
      store->store->set(std::string(key), std::vector<uint8_t>(ours.begin(), ours.end()));
    }
    auto value = store->store->get(std::string(key));
    std::string found(value.begin(), value.end());
    if (found != ours) {
      throw std::runtime_error(
          "the store belongs to another run (its token " + found + ", this run's " + ours +
          "): another job uses this address and port, or this run's nodes do not share their "
          "checkpoint location (launch.run_id names a run explicitly)");
    }
  });
}

char* arl_pg_gloo_create(
    arl_store* store,
    const char* prefix,
    int32_t rank,
    int32_t size,
    const char* hostname,
    int64_t timeout_ms,
    int32_t threads,
    arl_pg** out) {
  return guarded([&] {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store->store);
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    // An empty hostname means c10d's default: the address this machine's hostname resolves to.
    std::string host(hostname);
    opts->devices.push_back(
        host.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                     : c10d::ProcessGroupGloo::createDeviceForHostname(host));
    opts->threads = threads;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, opts);
    *out = new arl_pg{pg};
  });
}

char* arl_pg_nccl_create(
    arl_store* store,
    const char* prefix,
    int32_t rank,
    int32_t size,
    int64_t timeout_ms,
    arl_pg** out) {
#ifdef ARL_WITH_NCCL
  return guarded([&] {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store->store);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, opts);
    *out = new arl_pg{pg};
  });
#else
  (void)store;
  (void)prefix;
  (void)rank;
  (void)size;
  (void)timeout_ms;
  (void)out;
  return dup_message("this build has no NCCL support: rebuild with the cargo feature `nccl`");
#endif
}

void arl_pg_free(arl_pg* pg) {
  delete pg;
}

// Reduces each tensor across ranks, in place (op 0: sum, 1: max): one collective per tensor,
// all issued before the first wait so that they overlap.
char* arl_pg_allreduce(arl_pg* pg, at::Tensor* const* tensors, size_t count, int32_t op) {
  return guarded([&] {
    if (op != 0 && op != 1) {
      throw std::invalid_argument("unknown reduce op " + std::to_string(op));
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      c10d::AllreduceOptions opts;
      opts.reduceOp = op == 0 ? c10d::ReduceOp::SUM : c10d::ReduceOp::MAX;
      works.push_back(pg->backend->allreduce(one, opts));
    }
    wait_all(works);
  });
}

// Broadcasts each tensor from `root`, in place.
char* arl_pg_broadcast(arl_pg* pg, at::Tensor* const* tensors, size_t count, int32_t root) {
  return guarded([&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      works.push_back(pg->backend->broadcast(one, opts));
    }
    wait_all(works);
  });
}

char* arl_pg_barrier(arl_pg* pg) {
  return guarded([&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works{pg->backend->barrier()};
    wait_all(works);
  });
}

char* arl_pg_shutdown(arl_pg* pg) {
  return guarded([&] { pg->backend->shutdown(); });
}

// Not c10d, but libtorch state that tch does not reach: bfloat16 autocast on the CPU as on
// CUDA (tch's own autocast switches CUDA only, and to float16). `device_type`: 0 the CPU,
// 1 CUDA. `enter` sets the state and reports the previous one; `exit` restores it and, when
// the outermost scope closes, frees the cast weights autocast cached.
char* arl_autocast_enter(int device_type, bool enabled, bool* previous) {
  return guarded([&] {
    const auto type = device_type == 1 ? at::kCUDA : at::kCPU;
    *previous = at::autocast::is_autocast_enabled(type);
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, enabled);
    at::autocast::increment_nesting();
  });
}

char* arl_autocast_exit(int device_type, bool previous) {
  return guarded([&] {
    const auto type = device_type == 1 ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(type, previous);
  });
}

} // extern "C"
