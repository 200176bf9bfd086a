// Fused CPU kernels of CDG's unstructured gate (S = b = 1), float32.
//
// Why: in eager torch, the gate's forward is four elementwise passes and its backward about ten,
// each a separate operator call and a trip through memory. Here the forward is one pass and the
// backward two sweeps, per sample, while the sample is still in cache. The maths is exactly
// cdg/gating/layers.py's _CDGGate (see its docstrings); the Python side checks shapes, dtypes
// and layouts before calling, so these functions trust their arguments.
//
// Layout: every full-size tensor is N x C x H x W, dense, in one memory format shared by all of
// them: NCHW (channels_last == 0, the channel of element j of a sample is j / HW) or
// channels_last (the channel is j % C). Threads: ATen's pool (at::parallel_for), over samples.
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <vector>

namespace {

// exp(x) for x <= 0, written so that the compiler vectorises it (glibc's expf does not
// vectorise without -ffast-math): Cody-Waite range reduction and a degree-6 polynomial; below -87
// it returns 0. tests/test_native_gate.py checks sigmoid_grad, built on it, against float64
// through cdg_sigmoid_grad_f32.
inline float exp_nonpositive(float x) {
  const bool flush = x < -87.0f;
  x = flush ? -87.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return flush ? 0.0f : p * scale;
}

// sigma'(m) = sigma(m) (1 - sigma(m)) = e / (1 + e)^2 with e = exp(-|m|) (symmetric in m).
inline float sigmoid_grad(float m) {
  const float e = exp_nonpositive(m < 0.0f ? m : -m);
  const float d = 1.0f + e;
  return e / (d * d);
}

// Per-sample mean and sqrt(population variance + eps) of numel values (sums in double).
inline void sample_stats(const float* ps, int64_t numel, float eps, float& mean_out, float& std_out) {
  double sum = 0.0, sum_sq = 0.0;
#pragma omp simd reduction(+ : sum, sum_sq)
  for (int64_t j = 0; j < numel; ++j) {
    const double v = ps[j];
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / numel;
  const double var = std::max(sum_sq / numel - mean * mean, 0.0);
  mean_out = static_cast<float>(mean);
  std_out = static_cast<float>(std::sqrt(var + eps));
}


// One sample's backward through the gate, in two sweeps. The first computes
// h' = (gy * yc + fd) * sigma'(a (p - cut)), stores it in grad_base (when wanted) and sums it per
// channel (maps), in total and weighted by p. The second turns the stored h' into grad_base in
// place and writes grad_cond = gy * 1[p > cut] (the forward's decision, recomputed bit for bit;
// written by the first sweep when grad_base is not wanted). Element j of each output is written
// only after element j of every input has been read for the last time, so grad_base may share
// memory with yc and grad_cond with p (the caller donates the saved partial sums when autograd
// will not need them again). `#pragma omp simd` lets the compiler vectorise despite the aliasing.
struct SampleBackward {
  const float *gy, *yc, *p, *cut;
  float a, fd;
  float *grad_base, *grad_cond;
  double* maps;
  float* row;  // channels_last: per-channel partial sums of h' (C floats)
  int64_t c, hw;
  bool channels_last;

  inline float h(int64_t j, float cut_k) const {
    return (gy[j] * yc[j] + fd) * sigmoid_grad(a * (p[j] - cut_k));
  }

  // sweep 1 on elements [o, o + len) whose thresholds are cut_of(i) (i = 0 .. len-1); per_channel
  // (channels_last: element i is channel i) accumulates h' per channel when not null
  template <typename Cut>
  inline void sums(int64_t o, int64_t len, Cut cut_of, float* per_channel, float& part_h, float& part_hp) const {
    float* const hs = grad_base;
    float* const gc = grad_base ? nullptr : grad_cond;
#pragma omp simd reduction(+ : part_h, part_hp)
    for (int64_t i = 0; i < len; ++i) {
      const float cut_i = cut_of(i);
      const float pj = p[o + i];
      const float v = h(o + i, cut_i);
      if (hs) hs[o + i] = v;
      if (gc) gc[o + i] = pj > cut_i ? gy[o + i] : 0.0f;
      if (per_channel) per_channel[i] += v;
      part_h += v;
      part_hp += v * pj;
    }
  }

  void first_sweep(double& sum_h, double& sum_hp) const {
    sum_h = 0.0;
    sum_hp = 0.0;
    if (channels_last) {
      std::fill(row, row + c, 0.0f);
      for (int64_t i = 0; i < hw; ++i) {
        float part_h = 0.0f, part_hp = 0.0f;
        sums(i * c, c, [&](int64_t k) { return cut[k]; }, row, part_h, part_hp);
        sum_h += part_h;
        sum_hp += part_hp;
      }
      for (int64_t k = 0; k < c; ++k) maps[k] = row[k];
    } else {
      for (int64_t k = 0; k < c; ++k) {
        const float cut_k = cut[k];
        float part_h = 0.0f, part_hp = 0.0f;
        sums(k * hw, hw, [&](int64_t) { return cut_k; }, nullptr, part_h, part_hp);
        maps[k] = part_h;
        sum_h += part_h;
        sum_hp += part_hp;
      }
    }
  }

  // grad_base = gy + a h' + coef_p p + coef_c (h' read from grad_base), grad_cond = gy * 1[p > cut]
  void second_sweep(float coef_p, float coef_c) const {
    for (int64_t r = 0; r < (channels_last ? hw : c); ++r) {
      const int64_t len = channels_last ? c : hw, o = r * len;
      float* const gb = grad_base + o;
      float* const gc = grad_cond ? grad_cond + o : nullptr;
      const float *gys = gy + o, *ps = p + o;
      if (channels_last) {
#pragma omp simd
        for (int64_t k = 0; k < len; ++k) {
          const float pj = ps[k], gj = gys[k];
          gb[k] = gj + a * gb[k] + coef_p * pj + coef_c;
          if (gc) gc[k] = pj > cut[k] ? gj : 0.0f;
        }
      } else {
        const float cut_r = cut[r];
#pragma omp simd
        for (int64_t i = 0; i < len; ++i) {
          const float pj = ps[i], gj = gys[i];
          gb[i] = gj + a * gb[i] + coef_p * pj + coef_c;
          if (gc) gc[i] = pj > cut_r ? gj : 0.0f;
        }
      }
    }
  }
};

}  // namespace

extern "C" {

// out[i] = sigma'(m[i]), the surrogate derivative the backward uses (exposed for the tests).
void cdg_sigmoid_grad_f32(const float* m, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = sigmoid_grad(m[i]);
}

// mean[n], std[n] of each sample of p (N x numel), as sample_stats above.
void cdg_sample_stats_f32(const float* p, float* mean, float* std_, int64_t n, int64_t numel, float eps) {
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) sample_stats(p + s * numel, numel, eps, mean[s], std_[s]);
  });
}

// Forward, per sample: mean, std (as above), cut[n, c] = mean + std * threshold[c],
// g = 1[p > cut], y = p + g * yc (y may be p itself), density[n] = mean of g.
void cdg_gate_forward_f32(const float* p, const float* yc, const float* threshold, float eps, float* mean,
                          float* std_, float* cut, float* y, float* g, float* density, int64_t n, int64_t c,
                          int64_t hw, int32_t channels_last) {
  const int64_t numel = c * hw;
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const float* ps = p + s * numel;
      const float* ycs = yc + s * numel;
      float* cuts = cut + s * c;
      float* ys = y + s * numel;
      float* gs = g + s * numel;
      sample_stats(ps, numel, eps, mean[s], std_[s]);
      for (int64_t k = 0; k < c; ++k) cuts[k] = mean[s] + std_[s] * threshold[k];
      double on = 0.0;  // rows are counted in float (exact below 2^24) and summed in double
      if (channels_last) {
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t o = i * c;
          float row_on = 0.0f;
#pragma omp simd reduction(+ : row_on)
          for (int64_t k = 0; k < c; ++k) {
            const float gate = ps[o + k] > cuts[k] ? 1.0f : 0.0f;
            gs[o + k] = gate;
            ys[o + k] = ps[o + k] + gate * ycs[o + k];
            row_on += gate;
          }
          on += row_on;
        }
      } else {
        for (int64_t k = 0; k < c; ++k) {
          const int64_t o = k * hw;
          const float cut_k = cuts[k];
          float row_on = 0.0f;
#pragma omp simd reduction(+ : row_on)
          for (int64_t i = 0; i < hw; ++i) {
            const float gate = ps[o + i] > cut_k ? 1.0f : 0.0f;
            gs[o + i] = gate;
            ys[o + i] = ps[o + i] + gate * ycs[o + i];
            row_on += gate;
          }
          on += row_on;
        }
      }
      density[s] = static_cast<float>(on / numel);
    }
  });
}

// Backward. With h' = (gy * yc + grad_density[n] / (C H W)) * sigma'(a (p - cut)), a = alpha / std[n]:
//   grad_base = gy + a h' + B p + C   (the folded standardisation backward of _backward_lean)
//   grad_cond = gy * 1[p > cut]
//   grad_threshold[c] = -alpha * sum over samples and pixels of h'
// grad_density, grad_base, grad_cond and grad_threshold may be null (not wanted). grad_base may
// be yc and grad_cond may be p (see SampleBackward).
void cdg_gate_backward_f32(const float* gy, const float* yc, const float* p, const float* mean,
                           const float* std_, const float* cut, const float* grad_density, float alpha,
                           float* grad_base, float* grad_cond, float* grad_threshold, int64_t n, int64_t c,
                           int64_t hw, int32_t channels_last) {
  const int64_t numel = c * hw;
  std::vector<double> per_map(n * c);
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(channels_last ? c : 0);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t o = s * numel;
      const float a = alpha / std_[s];
      const float fd = grad_density ? static_cast<float>(static_cast<double>(grad_density[s]) / numel) : 0.0f;
      const SampleBackward sample{gy + o, yc + o, p + o, cut + s * c, a, fd,
                                  grad_base ? grad_base + o : nullptr, grad_cond ? grad_cond + o : nullptr,
                                  per_map.data() + s * c, row.data(), c, hw, channels_last != 0};
      double sum_h, sum_hp;
      sample.first_sweep(sum_h, sum_hp);
      if (grad_base) {
        const double mu = mean[s], sd = std_[s];
        const double mean_h = sum_h / numel, mean_hp = sum_hp / numel;
        const double m = (mean_hp - mu * mean_h) / sd;
        sample.second_sweep(static_cast<float>(-m * a / sd), static_cast<float>((mu * m / sd - mean_h) * a));
      }
    }
  });
  if (grad_threshold) {
    for (int64_t k = 0; k < c; ++k) {
      double total = 0.0;
      for (int64_t s = 0; s < n; ++s) total += per_map[s * c + k];
      grad_threshold[k] = static_cast<float>(-alpha * total);
    }
  }
}

}  // extern "C"
