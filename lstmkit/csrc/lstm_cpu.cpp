// The step loops of lstmkit.torch's fused LSTM on CPU, compiled on first use (lstmkit/_cpu_kernel.py).
//
// Same equations, rewrites and buffers as the torch ops in lstmkit/torch.py (_fused_forward and
// _fused_backward), but each step is one matrix product (at::addmm, as in torch) plus ONE pass over
// the step's elements that does all the elementwise work, split across torch's threads. In torch
// ops that work is six or three separate small ops, each on one thread (their tensors are below
// torch's threshold for a second thread), which is where the time went at small sizes.
//
// Layouts (all contiguous): gates (T, 4H, B) in gate order i, f, g, o; hn (H, T+1, B) holds -sign*h
// ("feature, time, batch", so that the weight gradients read it without a copy); c2 (T+1, H, B) or
// (2, H, B) holds 2*sign*c; s_c (T, H, B) = sigmoid(c2) = (1 + tanh(c)) / 2; da (4H, T, B).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace {

// exp for float, written so that the compiler vectorises it: Cody-Waite range reduction and the
// Cephes polynomial (relative error about 1e-7 on [-87, 88]; inputs are clamped to that range).
inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }  // float64 is for checks

// Rows per task of at::parallel_for: about 1024 numbers per task, so that both threads get work
// at small sizes without a task being smaller than the cost of handing it out.
inline int64_t grain(int64_t B) { return std::max<int64_t>(1, 1024 / std::max<int64_t>(B, 1)); }

// One row j of one step: the gates from their pre-activations (in place), the cell state, its
// sigmoid (kept for the backward when keep) and the hidden state. Separate, so that the compiler
// sees restrict pointers and vectorises the loop over the batch.
template <typename T, bool keep>
inline void forward_row(T* __restrict i_, T* __restrict f_, T* __restrict g_, T* __restrict o_,
                        const T* __restrict c_prev, T* __restrict c_new, T* __restrict s_c,
                        T* __restrict h, const T b_i, const T b_f, const T b_g, const T b_o, const T sign,
                        const int64_t B) {
  for (int64_t b = 0; b < B; ++b) {
    T i = sigmoid(i_[b] + b_i), f = sigmoid(f_[b] + b_f);
    T s_g = sigmoid(g_[b] + b_g), o = sigmoid(o_[b] + b_o);
    i_[b] = i, f_[b] = f, g_[b] = s_g, o_[b] = o;
    T c = f * c_prev[b] + sign * (4 * i * s_g - 2 * i);  // 2c = f 2c_prev + 2 i g, g = 2 s_g - 1
    T sc = sigmoid(c);                                    // (1 + sign tanh(c)) / 2
    c_new[b] = c;
    if constexpr (keep) s_c[b] = sc;
    h[b] = o - 2 * o * sc;                                // -sign h = -sign o tanh(c)
  }
}

// One row j of one backward step: from dh (w.r.t. h_t) and dc (w.r.t. c_t, from step t+1) the
// gradients w.r.t. the four pre-activations, and dc w.r.t. c_{t-1} in place of dc.
template <typename T>
inline void backward_row(const T* __restrict i_, const T* __restrict f_, const T* __restrict g_,
                         const T* __restrict o_, const T* __restrict c2_prev, const T* __restrict s_c,
                         const T* __restrict dh, T* __restrict dc, T* __restrict da_i, T* __restrict da_f,
                         T* __restrict da_g, T* __restrict da_o, const int64_t B) {
  for (int64_t b = 0; b < B; ++b) {
    T i = i_[b], f = f_[b], s_g = g_[b], o = o_[b], s = s_c[b], dr = dh[b];
    // With tanh(c) = 2 s_c - 1, g = 2 s_g - 1 and 1 - (2s - 1)^2 = 4 s (1 - s):
    T d_c = dc[b] + dr * o * 4 * s * (1 - s);    // dc += dh o (1 - tanh(c)^2)
    da_o[b] = dr * (2 * s - 1) * o * (1 - o);    // dh tanh(c) o (1 - o)
    da_i[b] = d_c * (2 * s_g - 1) * i * (1 - i); // dc g i (1 - i)
    da_f[b] = d_c * (T(0.5) * c2_prev[b]) * f * (1 - f);  // dc c_prev f (1 - f)
    da_g[b] = d_c * i * 4 * s_g * (1 - s_g);     // dc i (1 - g^2)
    dc[b] = d_c * f;                             // dc_prev
  }
}

template <typename T, bool keep>
void forward_steps_impl(at::Tensor& gates, const at::Tensor& w_h, const T* bias, at::Tensor& hn,
                        at::Tensor& c2, T* s_c, T sign) {
  const int64_t n_steps = gates.size(0), H = gates.size(1) / 4, B = gates.size(2);
  const int64_t hn_row = (n_steps + 1) * B;  // stride of one feature row of hn
  T* g_ptr = gates.data_ptr<T>();
  T* c_ptr = c2.data_ptr<T>();
  T* h_ptr = hn.data_ptr<T>();
  for (int64_t t = 0; t < n_steps; ++t) {
    at::Tensor a = gates.select(0, t);
    at::addmm_out(a, a, w_h, hn.select(1, t));  // a = W_ih x_t + W_hh h_{t-1}   (4H, B); + b below
    T* a_t = g_ptr + t * 4 * H * B;
    const T* c_prev = c_ptr + (keep ? t : t % 2) * H * B;
    T* c_new = c_ptr + (keep ? t + 1 : (t + 1) % 2) * H * B;
    T* s_t = keep ? s_c + t * H * B : nullptr;
    at::parallel_for(0, H, grain(B), [=](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        T* i = a_t + j * B;
        forward_row<T, keep>(i, i + H * B, i + 2 * H * B, i + 3 * H * B, c_prev + j * B, c_new + j * B,
                             keep ? s_t + j * B : nullptr, h_ptr + j * hn_row + (t + 1) * B, bias[j],
                             bias[H + j], bias[2 * H + j], bias[3 * H + j], sign, B);
      }
    });
  }
}

template <typename T>
void backward_steps_impl(const at::Tensor& gates, const at::Tensor& c2, const at::Tensor& s_c,
                         const at::Tensor& dy, const at::Tensor& w_hh_t, at::Tensor& dh, at::Tensor& dc,
                         at::Tensor& da) {
  const int64_t n_steps = gates.size(0), H = gates.size(1) / 4, B = gates.size(2);
  const T* g_ptr = gates.data_ptr<T>();
  const T* c_ptr = c2.data_ptr<T>();
  const T* s_ptr = s_c.data_ptr<T>();
  T* dh_ptr = dh.data_ptr<T>();
  T* dc_ptr = dc.data_ptr<T>();
  T* da_ptr = da.data_ptr<T>();
  const int64_t da_row = n_steps * B;  // stride of one row of da (4H, T, B)
  for (int64_t t = n_steps - 1; t >= 0; --t) {
    const T* a_t = g_ptr + t * 4 * H * B;
    const T* c_t = c_ptr + t * H * B;  // 2 c_{t-1}
    const T* s_t = s_ptr + t * H * B;
    at::parallel_for(0, H, grain(B), [=](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const T* i = a_t + j * B;
        T* da = da_ptr + j * da_row + t * B;
        backward_row<T>(i, i + H * B, i + 2 * H * B, i + 3 * H * B, c_t + j * B, s_t + j * B, dh_ptr + j * B,
                        dc_ptr + j * B, da, da + H * da_row, da + 2 * H * da_row, da + 3 * H * da_row, B);
      }
    });
    at::Tensor da_t = da.select(1, t);  // (4H, B), rows T*B apart
    if (t > 0) {
      at::addmm_out(dh, dy.select(0, t - 1), w_hh_t, da_t);  // dh_{t-1} = dy_{t-1} + W_hh^T da_t
    } else {
      at::mm_out(dh, w_hh_t, da_t);
    }
  }
}

void check(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "lstmkit cpu kernel: ", name,
              " must be a contiguous CPU tensor");
}

// gates: (T, 4H, B) input part in (without bias), gates out; w_h: (4H, H); bias: (4H,) (b_ih + b_hh,
// g rows doubled like w_h's); hn: (H, T+1, B) with hn[:, 0] set;
// c2: (T+1, H, B) (keep) or (2, H, B) with c2[0] set; s_c: (T, H, B) when keeping for a backward.
void forward_steps(at::Tensor gates, const at::Tensor& w_h, const at::Tensor& bias, at::Tensor hn,
                   at::Tensor c2, const c10::optional<at::Tensor>& s_c, double sign) {
  check(bias, "bias");
  for (const at::Tensor* p : std::initializer_list<const at::Tensor*>{&gates, &w_h, &hn, &c2}) {
    check(*p, "a buffer");
  }
  const bool keep = s_c.has_value();
  if (keep) check(*s_c, "s_c");
  if (gates.scalar_type() == at::kFloat) {
    const float* b = bias.data_ptr<float>();
    if (keep) forward_steps_impl<float, true>(gates, w_h, b, hn, c2, s_c->data_ptr<float>(), float(sign));
    else forward_steps_impl<float, false>(gates, w_h, b, hn, c2, nullptr, float(sign));
  } else {
    TORCH_CHECK(gates.scalar_type() == at::kDouble, "lstmkit cpu kernel: float32 or float64 only");
    const double* b = bias.data_ptr<double>();
    if (keep) forward_steps_impl<double, true>(gates, w_h, b, hn, c2, s_c->data_ptr<double>(), sign);
    else forward_steps_impl<double, false>(gates, w_h, b, hn, c2, nullptr, sign);
  }
}

// dy: (T, H, B) output gradients; dh: (H, B) holds dh_T + dy_{T-1} in, dh_0 out; dc: (H, B) holds
// dc_T in, dc_0 out; da: (4H, T, B) gets the gradient w.r.t. each step's pre-activations.
void backward_steps(const at::Tensor& gates, const at::Tensor& c2, const at::Tensor& s_c,
                    const at::Tensor& dy, const at::Tensor& w_hh_t, at::Tensor dh, at::Tensor dc,
                    at::Tensor da) {
  for (const at::Tensor* p :
       std::initializer_list<const at::Tensor*>{&gates, &c2, &s_c, &dy, &w_hh_t, &dh, &dc, &da}) {
    check(*p, "a buffer");
  }
  if (gates.scalar_type() == at::kFloat) {
    backward_steps_impl<float>(gates, c2, s_c, dy, w_hh_t, dh, dc, da);
  } else {
    TORCH_CHECK(gates.scalar_type() == at::kDouble, "lstmkit cpu kernel: float32 or float64 only");
    backward_steps_impl<double>(gates, c2, s_c, dy, w_hh_t, dh, dc, da);
  }
}

}  // namespace

TORCH_LIBRARY(lstmkit, m) {
  m.def("forward_steps(Tensor(a!) gates, Tensor w_h, Tensor bias, Tensor(b!) hn, Tensor(c!) c2, "
        "Tensor(d!)? s_c, float sign) -> ()", &forward_steps);
  m.def("backward_steps(Tensor gates, Tensor c2, Tensor s_c, Tensor dy, Tensor w_hh_t, Tensor(a!) dh, "
        "Tensor(b!) dc, Tensor(c!) da) -> ()", &backward_steps);
}
