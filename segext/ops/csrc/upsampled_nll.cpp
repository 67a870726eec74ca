// Per-pixel cross-entropy of x4 bilinearly upsampled logits, and its
// gradient, without the full-resolution logits in memory.
//
// UPSNet's L_sem (Xiong et al., CVPR 2019, Sec. 3.3): the 1/4-scale
// semantic logits X are upsampled to the label map's size (bilinear,
// align_corners=False) and classified per pixel. For an output pixel with
// logits z (C classes) and label y: nll = w_y (lse - z_y), lse =
// log sum_c exp(z_c); d nll / d z = w_y (softmax(z) - onehot(y)).
// segext/ops/native_build.py builds this file, segext/ops/upsampled_nll.py
// calls it through ctypes.
//
// Conventions:
// * the logits of one image are channels-last rows: source pixel (i, j) is
//   row i*w + j, `classes` values, contiguous (so are their gradient's);
// * labels (int64), nll, lse and the nll's gradient are (H, W) = (4h, 4w)
//   row-major planes of that image;
// * sampling is PyTorch's upsample_bilinear2d with align_corners=False and
//   scale 1/4: output row r reads the source at max((r + 0.5) / 4 - 0.5, 0)
//   (the same for columns), its neighbour below clamped to the last row;
//   vertical interpolation of a whole row first, then horizontal;
// * pixels labelled `ignore_index` have nll 0, lse 0 and no gradient.
// Each call handles one band serially; the caller's threads run bands in
// parallel. A source row's gradient sums its output rows in increasing
// order whatever the bands, so results are deterministic.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {

struct Shape {
  int64_t height, width;  // of the source (1/4-scale) map
  int64_t classes;
  int64_t ignore_index;
};

// The two source indices and weights output index `dst` reads.
template <typename T>
struct Tap {
  int64_t i0, i1;
  T l0, l1;
};

template <typename T>
inline Tap<T> source(int64_t dst, int64_t size) {
  T src = (static_cast<T>(dst) + T(0.5)) * T(0.25) - T(0.5);
  if (src < 0) src = 0;
  Tap<T> t;
  t.i0 = static_cast<int64_t>(src);
  t.i1 = t.i0 + (t.i0 < size - 1 ? 1 : 0);
  t.l1 = src - static_cast<T>(t.i0);
  t.l0 = T(1) - t.l1;
  return t;
}

// exp(x) for x <= 0 (values below -87 give exp(-87)): Cephes' expf
// (2^n exp(r), |r| <= ln2 / 2, degree-6 polynomial, ~1 ulp) in a form
// compilers vectorise; std::exp for double.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  // round to nearest: x * log2(e) is in [-126, 0]
  const int32_t n = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);
  const float fn = static_cast<float>(n);
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

constexpr int kLanes = 8;

// max over z[0..n) (n >= 1), in lanes so that it vectorises
template <typename T>
inline T lane_max(const T* __restrict z, int64_t n) {
  T m[kLanes];
  for (int k = 0; k < kLanes; ++k) m[k] = z[0];
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int k = 0; k < kLanes; ++k) m[k] = z[c + k] > m[k] ? z[c + k] : m[k];
  T out = m[0];
  for (int k = 1; k < kLanes; ++k) out = m[k] > out ? m[k] : out;
  for (; c < n; ++c) out = z[c] > out ? z[c] : out;
  return out;
}

// e[c] = exp(z[c] - shift); returns sum_c e[c] (in lanes, then in order)
template <typename T>
inline T exp_sum(const T* __restrict z, T shift, int64_t n,
                 T* __restrict e) {
  for (int64_t c = 0; c < n; ++c) e[c] = exp_nonpositive(z[c] - shift);
  T s[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += e[c + k];
  T out = 0;
  for (int k = 0; k < kLanes; ++k) out += s[k];
  for (; c < n; ++c) out += e[c];
  return out;
}

// One output row's vertical interpolation: rows (w, C) of the source.
template <typename T>
struct RowSampler {
  const Shape& s;
  const T* logits;
  std::vector<T> vert;  // (w, C): the output row before horizontal sampling

  RowSampler(const Shape& shape, const T* x)
      : s(shape), logits(x), vert(shape.width * shape.classes) {}

  Tap<T> load_row(int64_t r) {
    const Tap<T> ty = source<T>(r, s.height);
    const int64_t n = s.width * s.classes;
    const T* a = logits + ty.i0 * n;
    const T* b = logits + ty.i1 * n;
    T* v = vert.data();
    for (int64_t k = 0; k < n; ++k) v[k] = ty.l0 * a[k] + ty.l1 * b[k];
    return ty;
  }

  // the logits (C) of output pixel (r, col) of the loaded row
  Tap<T> pixel(int64_t col, T* z) const {
    const Tap<T> tx = source<T>(col, s.width);
    const T* a = vert.data() + tx.i0 * s.classes;
    const T* b = vert.data() + tx.i1 * s.classes;
    for (int64_t c = 0; c < s.classes; ++c) z[c] = tx.l0 * a[c] + tx.l1 * b[c];
    return tx;
  }
};

template <typename T>
inline T class_weight_of(const T* class_weight, int64_t y) {
  return class_weight == nullptr ? T(1) : class_weight[y];
}

// nll and lse of output rows r0..r1; returns -1, or the flat index of the
// first label outside [0, C) that is not ignore_index (nothing written
// for it and after it)
template <typename T>
int64_t forward(const Shape* shape, const T* logits, const int64_t* labels,
                const T* class_weight, int64_t r0, int64_t r1, T* nll,
                T* lse) {
  const Shape& s = *shape;
  const int64_t out_w = 4 * s.width;
  RowSampler<T> rows(s, logits);
  std::vector<T> z(s.classes), e(s.classes);
  for (int64_t r = r0; r < r1; ++r) {
    rows.load_row(r);
    for (int64_t col = 0; col < out_w; ++col) {
      const int64_t p = r * out_w + col;
      const int64_t y = labels[p];
      if (y == s.ignore_index) {
        nll[p] = lse[p] = 0;
        continue;
      }
      if (y < 0 || y >= s.classes) return p;
      rows.pixel(col, z.data());
      const T m = lane_max(z.data(), s.classes);
      lse[p] = m + std::log(exp_sum(z.data(), m, s.classes, e.data()));
      nll[p] = class_weight_of(class_weight, y) * (lse[p] - z[y]);
    }
  }
  return -1;
}

// the gradient of source rows i0..i1 (written, not accumulated) from the
// nll's gradient `grad_nll` and the forward's lse
template <typename T>
void backward(const Shape* shape, const T* logits, const int64_t* labels,
              const T* class_weight, const T* lse, const T* grad_nll,
              int64_t i0, int64_t i1, T* grad) {
  const Shape& s = *shape;
  const int64_t out_w = 4 * s.width, out_h = 4 * s.height;
  const int64_t n = s.width * s.classes;
  std::memset(grad + i0 * n, 0, sizeof(T) * (i1 - i0) * n);
  RowSampler<T> rows(s, logits);
  std::vector<T> z(s.classes), e(s.classes), g_vert(n);
  // output rows r read source rows <= r / 4 + 1 and >= (r - 6) / 4
  const int64_t r_lo = i0 * 4 - 8 > 0 ? i0 * 4 - 8 : 0;
  const int64_t r_hi = i1 * 4 + 8 < out_h ? i1 * 4 + 8 : out_h;
  for (int64_t r = r_lo; r < r_hi; ++r) {
    const Tap<T> ty = source<T>(r, s.height);
    const bool use0 = ty.i0 >= i0 && ty.i0 < i1;
    const bool use1 = ty.i1 >= i0 && ty.i1 < i1;
    if (!use0 && !use1) continue;
    rows.load_row(r);
    std::fill(g_vert.begin(), g_vert.end(), T(0));
    for (int64_t col = 0; col < out_w; ++col) {
      const int64_t p = r * out_w + col;
      const int64_t y = labels[p];
      if (y == s.ignore_index || grad_nll[p] == 0) continue;
      const T scale = grad_nll[p] * class_weight_of(class_weight, y);
      const Tap<T> tx = rows.pixel(col, z.data());
      exp_sum(z.data(), lse[p], s.classes, e.data());  // softmax
      e[y] -= 1;
      T* a = g_vert.data() + tx.i0 * s.classes;
      T* b = g_vert.data() + tx.i1 * s.classes;
      const T sa = scale * tx.l0, sb = scale * tx.l1;
      for (int64_t c = 0; c < s.classes; ++c) a[c] += sa * e[c];
      for (int64_t c = 0; c < s.classes; ++c) b[c] += sb * e[c];
    }
    if (use0) {
      T* dst = grad + ty.i0 * n;
      for (int64_t k = 0; k < n; ++k) dst[k] += ty.l0 * g_vert[k];
    }
    if (use1) {
      T* dst = grad + ty.i1 * n;
      for (int64_t k = 0; k < n; ++k) dst[k] += ty.l1 * g_vert[k];
    }
  }
}

}  // namespace

extern "C" {

#define SEGEXT_UNLL_EXPORT(T, SUFFIX)                                        \
  int64_t segext_unll_forward_##SUFFIX(                                      \
      const Shape* s, const T* logits, const int64_t* labels,               \
      const T* class_weight, int64_t r0, int64_t r1, T* nll, T* lse) {      \
    return forward<T>(s, logits, labels, class_weight, r0, r1, nll, lse);   \
  }                                                                          \
  void segext_unll_backward_##SUFFIX(                                        \
      const Shape* s, const T* logits, const int64_t* labels,               \
      const T* class_weight, const T* lse, const T* grad_nll, int64_t i0,   \
      int64_t i1, T* grad) {                                                 \
    backward<T>(s, logits, labels, class_weight, lse, grad_nll, i0, i1,     \
                grad);                                                       \
  }

SEGEXT_UNLL_EXPORT(float, f32)
SEGEXT_UNLL_EXPORT(double, f64)

#undef SEGEXT_UNLL_EXPORT

}  // extern "C"
