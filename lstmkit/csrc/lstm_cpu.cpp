// The step loops of lstmkit.torch's fused LSTM on CPU, compiled on first use (lstmkit/_cpu_kernel.py).
//
// Same equations and rewrites as the torch ops in lstmkit/torch.py (_fused_forward and
// _fused_backward), but each step is one matrix product plus ONE pass over the step's elements that
// does all the elementwise work, split across torch's OpenMP threads. In torch ops that work is six
// or three separate small ops, each on one thread (their tensors are below torch's threshold for a
// second thread), which is where the time went at small sizes. The products call the BLAS that
// torch links (sgemm_/dgemm_) directly: at::addmm's dispatch cost about 3 us of each step's 45.
// Callers must not pass empty sizes (T, B or H of 0): MKL rejects them and prints an error.
//
// Layouts (all contiguous). Shared with the torch ops: gates (T, 4H, B) in gate order i, f, g, o
// (inputs part in, i, f, sigmoid(2 a_g), o out); c2 (T+1, H, B), or (2, H, B) alternating without
// keep, holds 2*sign*c; s_c (T, H, B) = sigmoid(c2) = (1 + tanh(c)) / 2.
// Different from the torch ops: hn is (H, T+1, B) here ("feature, time, batch", so that the weight
// gradient dW_hh reads it without a copy) and (T+1, P, B) there (each step's block contiguous; the
// (feature, time, batch) buffer measured slower as torch ops); the backward's gate gradients da are
// (4H, T, B) here and (T, 4H, B) there (inside a (T+1, 5, H, B) buffer with f in front). So the
// saved buffers of one path cannot be read by the other's backward: lstmkit::layer_train's `kernel`
// argument records which path ran. Projections and masks exist only in the torch ops.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

namespace {

// exp for float: Cody-Waite range reduction and the Cephes polynomial (relative error about 1e-7 on
// [-87, 88]; inputs are clamped to that range). One set of constants for the scalar exp_f (written
// so that the compiler vectorises it) and the AVX2 exp8 below.
constexpr float kExpMin = -87.0f, kExpMax = 88.0f, kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = 2.12194440e-4f;  // ln 2 = kLn2Hi - kLn2Lo
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

inline float exp_f(float x) {
  x = x < kExpMin ? kExpMin : x;
  x = x > kExpMax ? kExpMax : x;
  float n = std::floor(x * kLog2e + 0.5f);
  float r = x - n * kLn2Hi;
  r = r + n * kLn2Lo;
  float p = kExpPoly[0];
  for (int k = 1; k < 6; ++k) p = p * r + kExpPoly[k];
  p = p * (r * r) + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }  // float64 is for checks

// Columns [b0, B) of row j of one step: the gates from their pre-activations (in place), the cell
// state, its sigmoid (kept for the backward when keep) and the hidden state. Separate, so that the
// compiler sees restrict pointers and vectorises the loop over the batch.
template <typename T, bool keep>
inline void forward_cols(T* __restrict i_, T* __restrict f_, T* __restrict g_, T* __restrict o_,
                         const T* __restrict c_prev, T* __restrict c_new, T* __restrict s_c, T* __restrict h,
                         const T b_i, const T b_f, const T b_g, const T b_o, const T sign, const int64_t b0,
                         const int64_t B) {
  for (int64_t b = b0; b < B; ++b) {
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

#if defined(__AVX2__) && defined(__FMA__)
// The same for float, eight columns at a time with AVX2. Written out because the compiler turns
// exp_f's clamps into compare-and-blend pairs in the loop above (min/max would drop NaN unless told
// that there are none); here _mm256_max_ps(bound, x) returns x when x is NaN, so NaN still
// propagates. The forward pass runs about 10 % faster.
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(kExpMax), _mm256_max_ps(_mm256_set1_ps(kExpMin), x));
  const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(kLog2e), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int k = 1; k < 6; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[k]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

#endif

// Row j of one step (see forward_cols), float with AVX2 eight columns at a time.
template <typename T, bool keep>
inline void forward_row(T* i_, T* f_, T* g_, T* o_, const T* c_prev, T* c_new, T* s_c, T* h, const T b_i,
                        const T b_f, const T b_g, const T b_o, const T sign, const int64_t B) {
  int64_t b = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f), sign8 = _mm256_set1_ps(sign);
    for (; b + 8 <= B; b += 8) {
      const __m256 i = sigmoid8(_mm256_add_ps(_mm256_loadu_ps(i_ + b), _mm256_set1_ps(b_i)));
      const __m256 f = sigmoid8(_mm256_add_ps(_mm256_loadu_ps(f_ + b), _mm256_set1_ps(b_f)));
      const __m256 s_g = sigmoid8(_mm256_add_ps(_mm256_loadu_ps(g_ + b), _mm256_set1_ps(b_g)));
      const __m256 o = sigmoid8(_mm256_add_ps(_mm256_loadu_ps(o_ + b), _mm256_set1_ps(b_o)));
      _mm256_storeu_ps(i_ + b, i), _mm256_storeu_ps(f_ + b, f), _mm256_storeu_ps(g_ + b, s_g);
      _mm256_storeu_ps(o_ + b, o);
      const __m256 ig2 = _mm256_fmsub_ps(_mm256_mul_ps(four, i), s_g, _mm256_mul_ps(two, i));  // 2 i g
      const __m256 c = _mm256_fmadd_ps(f, _mm256_loadu_ps(c_prev + b), _mm256_mul_ps(sign8, ig2));
      const __m256 sc = sigmoid8(c);
      _mm256_storeu_ps(c_new + b, c);
      if constexpr (keep) _mm256_storeu_ps(s_c + b, sc);
      _mm256_storeu_ps(h + b, _mm256_fnmadd_ps(_mm256_mul_ps(two, o), sc, o));  // o - 2 o sc
    }
  }
#endif
  forward_cols<T, keep>(i_, f_, g_, o_, c_prev, c_new, s_c, h, b_i, b_f, b_g, b_o, sign, b, B);
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

// Row-major C (M, N) = A (M, K) B (K, N) + beta C, with leading dimensions, by the BLAS that torch
// links (MKL on x86: sgemm_/dgemm_ are exported by libtorch_cpu). Called inside a parallel region,
// it runs on the calling thread. Column-major BLAS sees each row-major matrix transposed, so it is
// asked for C^T = B^T A^T.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
}

inline void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float beta, float* C,
                 int ldc) {
  const float one = 1.0f;
  sgemm_("N", "N", &N, &M, &K, &one, B, &ldb, A, &lda, &beta, C, &ldc);
}
inline void gemm(int M, int N, int K, const double* A, int lda, const double* B, int ldb, double beta,
                 double* C, int ldc) {
  const double one = 1.0;
  dgemm_("N", "N", &N, &M, &K, &one, B, &ldb, A, &lda, &beta, C, &ldc);
}

// The hidden units [j0, j1) that thread tid of n_threads owns, in every step.
struct Units {
  int64_t j0, j1;
  Units(int64_t H, int tid, int n_threads) {
    const int64_t chunk = (H + n_threads - 1) / n_threads;
    j0 = std::min(H, tid * chunk);
    j1 = std::min(H, j0 + chunk);
  }
};

// Per step: the product on all threads (BLAS's own split), then the elementwise pass, each thread
// on its own block of hidden units. (Each thread computing the product rows of its own units in one
// parallel region for the whole loop measured no faster here: four small products per thread.)
template <typename T, bool keep>
void forward_steps_impl(T* gates, const T* w_h, const T* bias, T* hn, T* c2, T* s_c, T sign, int64_t n_steps,
                        int64_t H, int64_t B) {
  const int64_t hn_row = (n_steps + 1) * B;
  for (int64_t t = 0; t < n_steps; ++t) {
    T* a_t = gates + t * 4 * H * B;
    gemm(int(4 * H), int(B), int(H), w_h, int(H), hn + t * B, int(hn_row), T(1), a_t, int(B));
    const T* c_prev = c2 + (keep ? t : t % 2) * H * B;
    T* c_new = c2 + (keep ? t + 1 : (t + 1) % 2) * H * B;
    T* s_t = keep ? s_c + t * H * B : nullptr;
#pragma omp parallel
    {
      const Units u(H, omp_get_thread_num(), omp_get_num_threads());
      for (int64_t j = u.j0; j < u.j1; ++j) {
        T* i = a_t + j * B;
        forward_row<T, keep>(i, i + H * B, i + 2 * H * B, i + 3 * H * B, c_prev + j * B, c_new + j * B,
                             keep ? s_t + j * B : nullptr, hn + j * hn_row + (t + 1) * B, bias[j],
                             bias[H + j], bias[2 * H + j], bias[3 * H + j], sign, B);
      }
    }
  }
}

// Backward: one parallel region for the whole loop. Each thread owns a block of hidden units; per
// step it computes their gate gradients, waits for all threads' (the one barrier per step), then
// the rows of dh_{t-1} = dy_{t-1} + W_hh^T da_t that belong to its units, with a product of its own
// (BLAS runs single-threaded inside the region). The next step needs only its own rows of dh.
template <typename T>
void backward_steps_impl(const T* gates, const T* c2, const T* s_c, const T* dy, const T* w_hh_t, T* dh, T* dc,
                         T* da, int64_t n_steps, int64_t H, int64_t B) {
  const int64_t TB = n_steps * B;
#pragma omp parallel
  {
    const Units u(H, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t t = n_steps - 1; t >= 0; --t) {
      const T* a_t = gates + t * 4 * H * B;
      const T* c_t = c2 + t * H * B;  // 2 c_{t-1}
      const T* s_t = s_c + t * H * B;
      for (int64_t j = u.j0; j < u.j1; ++j) {
        const T* i = a_t + j * B;
        T* da_j = da + j * TB + t * B;
        backward_row<T>(i, i + H * B, i + 2 * H * B, i + 3 * H * B, c_t + j * B, s_t + j * B, dh + j * B,
                        dc + j * B, da_j, da_j + H * TB, da_j + 2 * H * TB, da_j + 3 * H * TB, B);
        if (t > 0) std::memcpy(dh + j * B, dy + ((t - 1) * H + j) * B, B * sizeof(T));
      }
#pragma omp barrier
      if (u.j1 > u.j0) {
        gemm(int(u.j1 - u.j0), int(B), int(4 * H), w_hh_t + u.j0 * 4 * H, int(4 * H), da + t * B, int(TB),
             t > 0 ? T(1) : T(0), dh + u.j0 * B, int(B));
      }
    }
  }
}

void check(std::initializer_list<const at::Tensor*> buffers, at::ScalarType dtype) {
  for (const at::Tensor* x : buffers) {
    TORCH_CHECK(x->device().is_cpu() && x->is_contiguous() && x->scalar_type() == dtype,
                "lstmkit cpu kernel: every buffer must be a contiguous CPU tensor of one dtype");
  }
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "lstmkit cpu kernel: float32 or float64 only");
}

// The kernel writes through raw pointers: every buffer's shape is checked first.
void check_shape(const at::Tensor& x, std::initializer_list<int64_t> shape, const char* name) {
  TORCH_CHECK(x.sizes() == at::IntArrayRef(shape), "lstmkit cpu kernel: ", name, " has shape ", x.sizes(),
              ", expected ", at::IntArrayRef(shape));
}

// BLAS takes 32-bit sizes: the longest leading dimension is hn's row, (T+1) B.
void check_sizes(int64_t n_steps, int64_t H, int64_t B) {
  TORCH_CHECK((n_steps + 1) * B < INT32_MAX && 4 * H < INT32_MAX, "lstmkit cpu kernel: sizes beyond 32 bits");
}

template <typename T>
void forward_typed(at::Tensor& gates, const at::Tensor& w_h, const at::Tensor& bias, at::Tensor& hn,
                   at::Tensor& c2, const c10::optional<at::Tensor>& s_c, T sign) {
  const int64_t n_steps = gates.size(0), H = gates.size(1) / 4, B = gates.size(2);
  check_sizes(n_steps, H, B);
  check_shape(gates, {n_steps, 4 * H, B}, "gates");
  check_shape(w_h, {4 * H, H}, "w_h");
  check_shape(bias, {4 * H}, "bias");
  check_shape(hn, {H, n_steps + 1, B}, "hn");
  check_shape(c2, {s_c.has_value() ? n_steps + 1 : 2, H, B}, "c2");
  if (s_c.has_value()) check_shape(*s_c, {n_steps, H, B}, "s_c");
  T *g = gates.data_ptr<T>(), *h = hn.data_ptr<T>(), *c = c2.data_ptr<T>();
  const T *w = w_h.data_ptr<T>(), *b = bias.data_ptr<T>();
  if (s_c.has_value()) forward_steps_impl<T, true>(g, w, b, h, c, s_c->data_ptr<T>(), sign, n_steps, H, B);
  else forward_steps_impl<T, false>(g, w, b, h, c, nullptr, sign, n_steps, H, B);
}

// gates: (T, 4H, B) input part in (without bias), gates out; w_h: (4H, H); bias: (4H,) (b_ih + b_hh,
// g rows doubled like w_h's); hn: (H, T+1, B) with hn[:, 0] set;
// c2: (T+1, H, B) (keep) or (2, H, B) with c2[0] set; s_c: (T, H, B) when keeping for a backward.
void forward_steps(at::Tensor gates, const at::Tensor& w_h, const at::Tensor& bias, at::Tensor hn,
                   at::Tensor c2, const c10::optional<at::Tensor>& s_c, double sign) {
  check({&gates, &w_h, &bias, &hn, &c2}, gates.scalar_type());
  TORCH_CHECK(gates.dim() == 3 && gates.size(1) % 4 == 0, "lstmkit cpu kernel: gates must be (T, 4H, B)");
  if (s_c.has_value()) check({&*s_c}, gates.scalar_type());
  at::internal::lazy_init_num_threads();
  if (gates.scalar_type() == at::kFloat) forward_typed<float>(gates, w_h, bias, hn, c2, s_c, float(sign));
  else forward_typed<double>(gates, w_h, bias, hn, c2, s_c, sign);
}

template <typename T>
void backward_typed(const at::Tensor& gates, const at::Tensor& c2, const at::Tensor& s_c, const at::Tensor& dy,
                    const at::Tensor& w_hh_t, at::Tensor& dh, at::Tensor& dc, at::Tensor& da) {
  const int64_t n_steps = gates.size(0), H = gates.size(1) / 4, B = gates.size(2);
  check_sizes(n_steps, H, B);
  check_shape(gates, {n_steps, 4 * H, B}, "gates");
  check_shape(c2, {n_steps + 1, H, B}, "c2");
  check_shape(s_c, {n_steps, H, B}, "s_c");
  check_shape(dy, {n_steps, H, B}, "dy");
  check_shape(w_hh_t, {H, 4 * H}, "w_hh_t");
  check_shape(dh, {H, B}, "dh");
  check_shape(dc, {H, B}, "dc");
  check_shape(da, {4 * H, n_steps, B}, "da");
  backward_steps_impl<T>(gates.data_ptr<T>(), c2.data_ptr<T>(), s_c.data_ptr<T>(), dy.data_ptr<T>(),
                         w_hh_t.data_ptr<T>(), dh.data_ptr<T>(), dc.data_ptr<T>(), da.data_ptr<T>(), n_steps, H, B);
}

// dy: (T, H, B) output gradients; dh: (H, B) holds dh_T + dy_{T-1} in, dh_0 out; dc: (H, B) holds
// dc_T in, dc_0 out; da: (4H, T, B) gets the gradient w.r.t. each step's pre-activations.
void backward_steps(const at::Tensor& gates, const at::Tensor& c2, const at::Tensor& s_c,
                    const at::Tensor& dy, const at::Tensor& w_hh_t, at::Tensor dh, at::Tensor dc,
                    at::Tensor da) {
  check({&gates, &c2, &s_c, &dy, &w_hh_t, &dh, &dc, &da}, gates.scalar_type());
  TORCH_CHECK(gates.dim() == 3 && gates.size(1) % 4 == 0, "lstmkit cpu kernel: gates must be (T, 4H, B)");
  at::internal::lazy_init_num_threads();
  if (gates.scalar_type() == at::kFloat) backward_typed<float>(gates, c2, s_c, dy, w_hh_t, dh, dc, da);
  else backward_typed<double>(gates, c2, s_c, dy, w_hh_t, dh, dc, da);
}

}  // namespace

TORCH_LIBRARY(lstmkit, m) {
  m.def("forward_steps(Tensor(a!) gates, Tensor w_h, Tensor bias, Tensor(b!) hn, Tensor(c!) c2, "
        "Tensor(d!)? s_c, float sign) -> ()", &forward_steps);
  m.def("backward_steps(Tensor gates, Tensor c2, Tensor s_c, Tensor dy, Tensor w_hh_t, Tensor(a!) dh, "
        "Tensor(b!) dc, Tensor(c!) da) -> ()", &backward_steps);
}
