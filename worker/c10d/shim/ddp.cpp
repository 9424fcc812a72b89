// Gradient all-reduce overlapped with backward, as PyTorch's DDP does it, without Python.
//
// Every parameter's gradient is a view into a flat bucket buffer, so nothing is packed or
// copied. A post-hook on each parameter's gradient accumulator counts its bucket down; once a
// bucket's gradients are all in, and every bucket before it has been launched, its all-reduce
// is issued right away, while backward goes on. Buckets are launched in bucket order on every
// rank, so collectives match across ranks. `finish` launches what is left (parameters that got
// no gradient count as ready, with zeros), waits, and divides by the world size.
//
// Same contract as c10d_shim.cpp: entry points never throw; they return NULL or an error.

#include "common.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using arl_shim::guarded;
using arl_shim::wait_all;

namespace {

struct Bucket {
  at::Tensor flat;
  std::vector<int64_t> members;
  size_t pending = 0;
  // The sum of this rank's gradients in the bucket before the reduction: finite exactly when
  // they all are (short of an overflow of the sum itself, far beyond any usable gradient).
  // One read of the bucket, where isfinite().all() would also write a mask as large.
  at::Tensor local_sum;
  c10::intrusive_ptr<c10d::Work> work;
};

// What the hooks share with the entry points. Hooks hold it weakly: once the handle is freed,
// a later backward through the same parameters does nothing here.
struct State {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::vector<at::Tensor> params;
  std::vector<Bucket> buckets;
  std::vector<int64_t> bucket_of; // -1: the parameter is in no bucket
  std::mutex mu;
  bool armed = false;              // this backward launches the reductions
  size_t next = 0;                 // the first bucket not launched yet
  std::vector<uint8_t> fired;      // parameters whose gradient came in during this backward
  std::vector<int64_t> order;      // in the order they came in
  std::string failure;             // a launch that failed inside a hook

  // Launches every bucket from `next` on whose gradients are all in (caller holds `mu`).
  void launch_ready() {
    while (next < buckets.size() && buckets[next].pending == 0) {
      launch(buckets[next]);
      ++next;
    }
  }

  void launch(Bucket& bucket) {
    bucket.local_sum = bucket.flat.sum();
    std::vector<at::Tensor> one{bucket.flat};
    bucket.work = backend->allreduce(one, c10d::AllreduceOptions{});
  }

  // The accumulator hook of parameter `index`: its gradient is complete for this backward.
  void ready(int64_t index) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || fired[index] != 0) {
      return;
    }
    fired[index] = 1;
    order.push_back(index);
    int64_t bucket = bucket_of[index];
    if (bucket < 0 || !failure.empty()) {
      return;
    }
    try {
      buckets[bucket].pending -= 1;
      launch_ready();
    } catch (const c10::Error& e) {
      failure = e.what_without_backtrace();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }

  void check_idle() const {
    for (const auto& bucket : buckets) {
      if (bucket.work) {
        throw std::logic_error("a gradient reduction is still in flight: call finish first");
      }
    }
  }
};

} // namespace

struct arl_ddp {
  std::shared_ptr<State> state;
  // Keeps each parameter's accumulator (and so its hook) alive.
  std::vector<c10::intrusive_ptr<torch::autograd::Node>> accumulators;
};

extern "C" {

// Hooks the gradient accumulators of `count` parameters (leaves that require grad). Gradients
// are left as they are until arl_ddp_set_buckets.
char* arl_ddp_create(arl_pg* pg, at::Tensor* const* params, size_t count, arl_ddp** out) {
  return guarded([&] {
    auto state = std::make_shared<State>();
    state->backend = pg->backend;
    state->bucket_of.assign(count, -1);
    state->fired.assign(count, 0);
    auto handle = std::make_unique<arl_ddp>();
    handle->state = state;
    std::weak_ptr<State> weak = state;
    for (size_t i = 0; i < count; ++i) {
      const at::Tensor& param = *params[i];
      if (!param.requires_grad() || !param.is_leaf()) {
        throw std::invalid_argument(
            "parameter #" + std::to_string(i) + " is not a leaf that requires grad");
      }
      state->params.push_back(param);
      auto accumulator = torch::autograd::impl::grad_accumulator(param);
      auto index = static_cast<int64_t>(i);
      accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [weak, index](const torch::autograd::variable_list& outputs,
                        const torch::autograd::variable_list& /*inputs*/) {
            if (auto live = weak.lock()) {
              live->ready(index);
            }
            return outputs;
          }));
      handle->accumulators.push_back(std::move(accumulator));
    }
    *out = handle.release();
  });
}

void arl_ddp_free(arl_ddp* ddp) {
  delete ddp;
}

// Regroups the parameters: `sizes[b]` parameter indices from `members` form bucket b (one
// dtype and device each). Each member's gradient becomes a view into its bucket, keeping the
// values it had; the gradient of a parameter in no bucket is dropped.
char* arl_ddp_set_buckets(arl_ddp* ddp, const int64_t* members, const int64_t* sizes, size_t count) {
  return guarded([&] {
    State& s = *ddp->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.check_idle();
    std::vector<Bucket> buckets(count);
    std::vector<int64_t> bucket_of(s.params.size(), -1);
    const int64_t* member = members;
    for (size_t b = 0; b < count; ++b) {
      Bucket& bucket = buckets[b];
      bucket.members.assign(member, member + sizes[b]);
      member += sizes[b];
      if (bucket.members.empty()) {
        throw std::invalid_argument("bucket " + std::to_string(b) + " is empty");
      }
      int64_t numel = 0;
      const at::Tensor& first = s.params.at(bucket.members[0]);
      for (int64_t index : bucket.members) {
        const at::Tensor& param = s.params.at(index);
        if (bucket_of[index] >= 0) {
          throw std::invalid_argument(
              "parameter #" + std::to_string(index) + " is in two buckets");
        }
        if (param.scalar_type() != first.scalar_type() || param.device() != first.device()) {
          throw std::invalid_argument(
              "bucket " + std::to_string(b) + " mixes dtypes or devices");
        }
        bucket_of[index] = static_cast<int64_t>(b);
        numel += param.numel();
      }
      bucket.flat = at::zeros({numel}, first.options().requires_grad(false));
      int64_t offset = 0;
      for (int64_t index : bucket.members) {
        at::Tensor& param = s.params[index];
        at::Tensor view = bucket.flat.narrow(0, offset, param.numel()).view(param.sizes());
        if (param.grad().defined()) {
          view.copy_(param.grad());
        }
        param.mutable_grad() = view;
        offset += param.numel();
      }
    }
    for (size_t index = 0; index < s.params.size(); ++index) {
      if (bucket_of[index] < 0) {
        s.params[index].mutable_grad() = at::Tensor();
      }
    }
    s.buckets = std::move(buckets);
    s.bucket_of = std::move(bucket_of);
  });
}

// Sets every bucketed gradient to zero.
char* arl_ddp_zero(arl_ddp* ddp) {
  return guarded([&] {
    State& s = *ddp->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.check_idle();
    for (auto& bucket : s.buckets) {
      bucket.flat.zero_();
    }
  });
}

// Prepares for one backward pass: with `sync`, its hooks launch the reductions (the last
// micro-batch of a step); without, gradients only accumulate (DDP's no_sync).
char* arl_ddp_arm(arl_ddp* ddp, bool sync) {
  return guarded([&] {
    State& s = *ddp->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.check_idle();
    s.armed = sync;
    s.next = 0;
    s.fired.assign(s.params.size(), 0);
    s.order.clear();
    s.failure.clear();
    for (auto& bucket : s.buckets) {
      bucket.pending = bucket.members.size();
    }
  });
}

// Ends an armed backward: launches the buckets still waiting (their missing gradients count as
// zeros), waits for every reduction and divides by the world size. Writes whether this rank's
// gradients were all finite before the reduction, which parameters got a gradient (`fired`, one
// byte per parameter), the order they came in (`order`, -1 after the last), and the seconds
// spent waiting here for reductions that backward did not hide.
char* arl_ddp_finish(
    arl_ddp* ddp,
    uint8_t* finite,
    uint8_t* fired,
    int64_t* order,
    double* wait_seconds) {
  return guarded([&] {
    State& s = *ddp->state;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      if (!s.armed) {
        throw std::logic_error("finish without an armed backward");
      }
      s.armed = false;
      for (; s.next < s.buckets.size(); ++s.next) {
        s.launch(s.buckets[s.next]);
      }
      for (auto& bucket : s.buckets) {
        if (bucket.work) {
          works.push_back(bucket.work);
          bucket.work.reset();
        }
      }
      for (size_t i = 0; i < s.params.size(); ++i) {
        fired[i] = s.fired[i];
        order[i] = i < s.order.size() ? s.order[i] : -1;
      }
      if (!s.failure.empty()) {
        wait_all(works);
        throw std::runtime_error(s.failure);
      }
    }
    auto start = std::chrono::steady_clock::now();
    wait_all(works);
    *wait_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bool all_finite = true;
    double world = static_cast<double>(s.backend->getSize());
    for (auto& bucket : s.buckets) {
      all_finite = all_finite && std::isfinite(bucket.local_sum.item<double>());
      bucket.flat.div_(world);
    }
    *finite = all_finite ? 1 : 0;
  });
}

} // extern "C"
