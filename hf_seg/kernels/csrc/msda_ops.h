// Host-side declarations and argument checks shared by the CPU and CUDA builds.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <tuple>

#include "msda.h"

// TORCH_LIBRARY pastes its namespace argument without expanding macros; this
// indirection expands HFSEG_NS first.
#define HFSEG_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define HFSEG_TORCH_LIBRARY_IMPL(ns, k, m) TORCH_LIBRARY_IMPL(ns, k, m)

namespace hf_seg_msda {

struct Dims {
  int64_t B, S, M, D, Q, L, P;
};

inline Dims check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                         const at::Tensor& level_start_index,
                         const at::Tensor& sampling_locations,
                         const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4,
              "ms_deform_attn: value must be [batch, sum(H*W), heads, dim_per_head], got shape ",
              value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be [batch, queries, heads, levels, points, 2], "
              "got shape ", sampling_locations.sizes());
  TORCH_CHECK(attention_weights.dim() == 5,
              "ms_deform_attn: attention_weights must be [batch, queries, heads, levels, points], "
              "got shape ", attention_weights.sizes());
  Dims d{value.size(0), value.size(1), value.size(2), value.size(3),
         sampling_locations.size(1), sampling_locations.size(3), sampling_locations.size(4)};
  TORCH_CHECK(sampling_locations.size(0) == d.B && sampling_locations.size(2) == d.M,
              "ms_deform_attn: sampling_locations ", sampling_locations.sizes(),
              " does not match value ", value.sizes(), " in batch or heads");
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
              "ms_deform_attn: attention_weights ", attention_weights.sizes(),
              " does not match sampling_locations ", sampling_locations.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) == d.L &&
                  spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be [levels=", d.L, ", 2], got ",
              spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == d.L,
              "ms_deform_attn: level_start_index must be [levels=", d.L, "], got ",
              level_start_index.sizes());
  TORCH_CHECK(at::isFloatingType(value.scalar_type()),
              "ms_deform_attn: value must be floating point, got ", value.scalar_type());
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_locations and attention_weights must share a dtype, got ",
              value.scalar_type(), ", ", sampling_locations.scalar_type(), ", ",
              attention_weights.scalar_type());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64");
  const auto dev = value.device();
  TORCH_CHECK(sampling_locations.device() == dev && attention_weights.device() == dev &&
                  spatial_shapes.device() == dev && level_start_index.device() == dev,
              "ms_deform_attn: all inputs must be on the same device as value (", dev, ")");
  return d;
}

inline void check_grad_output(const at::Tensor& grad_output, const at::Tensor& value,
                              const Dims& d) {
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == d.B &&
                  grad_output.size(1) == d.Q && grad_output.size(2) == d.M * d.D,
              "ms_deform_attn backward: grad_output must be [", d.B, ", ", d.Q, ", ", d.M * d.D,
              "], got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.device() == value.device(),
              "ms_deform_attn backward: grad_output must match value in dtype and device");
}

}  // namespace hf_seg_msda
