// Bilinear sampling of DCN v1 on CPU: the columns and their adjoint.
//
// Dai et al., "Deformable Convolutional Networks", ICCV 2017, eq. (1)-(2):
// every sample (output pixel p0, tap k) reads the input at
// p = p0 + p_k + dp_k by bilinear interpolation of its 4 neighbours.
// segext/ops/native_build.py builds this file with the machine's C++
// compiler, segext/ops/deform_sampling.py calls it through ctypes; the
// GEMMs stay in PyTorch.
//
// Conventions (those of segext/ops/deform_geometry.py, i.e. mmcv's):
// * the input is pixels as rows: pixel (n, y, x) is row n*H*W + y*W + x,
//   `channels` values each, contiguous (so are the input gradient's rows);
// * offsets are (B, dg, K, 2, Ho*Wo) planes: (dy, dx) per tap, row-major
//   taps; the caller passes the planes of one image and deformable group;
// * a sample at (y, x) with y <= -1, y >= H, x <= -1 or x >= W is zero and
//   has no offset gradient; otherwise each neighbour outside the map
//   counts as zero;
// * the sample of chunk pixel l (output pixel p0 + l) and tap k is row
//   l*K + k of the chunk's columns, `channels` values each.
// Every function handles one chunk serially, in sample order (the caller's
// threads run chunks in parallel), so results are deterministic.
#include <cmath>
#include <cstdint>

namespace {

struct Geometry {
  int64_t height, width, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t channels;
  int64_t plane;  // Ho*Wo: distance between offset planes
};

template <typename T>
struct Sample {
  bool inside;
  int64_t row[4];  // (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1)
  bool valid[4];
  T weight[4];
  T ly, lx;
};

template <typename T>
inline Sample<T> locate(const Geometry& g, const T* offsets, int64_t base,
                        int64_t p, int64_t tap) {
  Sample<T> s;
  const int64_t i = tap / g.kernel_w, j = tap % g.kernel_w;
  const int64_t oy = p / g.out_w, ox = p % g.out_w;
  const T gy = static_cast<T>(oy * g.stride_h - g.pad_h + i * g.dil_h);
  const T gx = static_cast<T>(ox * g.stride_w - g.pad_w + j * g.dil_w);
  const T y = offsets[(2 * tap) * g.plane + p] + gy;
  const T x = offsets[(2 * tap + 1) * g.plane + p] + gx;
  s.inside = y > -1 && y < g.height && x > -1 && x < g.width;
  if (!s.inside) return s;
  const T fy = std::floor(y), fx = std::floor(x);
  const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  s.ly = y - fy;
  s.lx = x - fx;
  const T hy = 1 - s.ly, hx = 1 - s.lx;
  const bool r0 = y0 >= 0, r1 = y0 < g.height - 1;
  const bool c0 = x0 >= 0, c1 = x0 < g.width - 1;
  s.valid[0] = r0 && c0;
  s.valid[1] = r0 && c1;
  s.valid[2] = r1 && c0;
  s.valid[3] = r1 && c1;
  s.weight[0] = hy * hx;
  s.weight[1] = hy * s.lx;
  s.weight[2] = s.ly * hx;
  s.weight[3] = s.ly * s.lx;
  const int64_t ys[2] = {y0, y0 + 1}, xs[2] = {x0, x0 + 1};
  for (int q = 0; q < 4; ++q)
    s.row[q] = s.valid[q] ? base + ys[q >> 1] * g.width + xs[q & 1] : -1;
  return s;
}

inline int64_t column_row(const Geometry& g, int64_t l, int64_t tap) {
  return l * g.kernel_h * g.kernel_w + tap;
}

// sum of g[c] * x[c], with grad_x[c] += w * g[c] when grad_x is given;
// 64 bytes of partial sums (one vector) in a fixed order
template <typename T, bool kDot, bool kAxpy>
inline T dot_axpy(const T* __restrict g, const T* __restrict x,
                  T* __restrict grad_x, T w, int64_t n) {
  constexpr int kLanes = 64 / sizeof(T);
  T acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int v = 0; v < kLanes; ++v) {
      if (kDot) acc[v] += g[c + v] * x[c + v];
      if (kAxpy) grad_x[c + v] += w * g[c + v];
    }
  }
  T tail = 0;
  for (; c < n; ++c) {
    if (kDot) tail += g[c] * x[c];
    if (kAxpy) grad_x[c] += w * g[c];
  }
  T sum = 0;
  for (int v = 0; v < kLanes; ++v) sum += acc[v];
  return sum + tail;
}

template <typename T>
void columns(const Geometry& g, const T* __restrict x, const T* offsets,
             int64_t base, int64_t p0, int64_t p1, T* __restrict cols) {
  const int64_t taps = g.kernel_h * g.kernel_w, n = g.channels;
  for (int64_t l = 0; l < p1 - p0; ++l) {
    for (int64_t tap = 0; tap < taps; ++tap) {
      const Sample<T> s = locate(g, offsets, base, p0 + l, tap);
      T* __restrict out = cols + column_row(g, l, tap) * g.channels;
      if (!s.inside) {
        for (int64_t c = 0; c < n; ++c) out[c] = 0;
        continue;
      }
      // neighbours outside the map: weight 0 on a real row
      const T* r[4];
      T w[4];
      int64_t any = -1;
      for (int q = 0; q < 4; ++q)
        if (s.valid[q]) any = s.row[q];
      for (int q = 0; q < 4; ++q) {
        r[q] = x + (s.valid[q] ? s.row[q] : (any < 0 ? base : any)) * g.channels;
        w[q] = s.valid[q] ? s.weight[q] : 0;
      }
      const T* __restrict a = r[0];
      const T* __restrict b = r[1];
      const T* __restrict c2 = r[2];
      const T* __restrict d = r[3];
      for (int64_t c = 0; c < n; ++c)
        out[c] = w[0] * a[c] + w[1] * b[c] + w[2] * c2[c] + w[3] * d[c];
    }
  }
}

template <typename T>
void row_range(const Geometry& g, const T* offsets, int64_t base, int64_t p0,
               int64_t p1, int64_t* lo_hi) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  int64_t lo = INT64_MAX, hi = -1;
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t tap = 0; tap < taps; ++tap) {
      const Sample<T> s = locate(g, offsets, base, p, tap);
      if (!s.inside) continue;
      for (int q = 0; q < 4; ++q)
        if (s.valid[q]) {
          lo = s.row[q] < lo ? s.row[q] : lo;
          hi = s.row[q] > hi ? s.row[q] : hi;
        }
    }
  lo_hi[0] = lo;
  lo_hi[1] = hi;
}

// grad_x: rows lo.. of the input gradient or null;
// grad_offsets: the offset-gradient planes of this image and deformable
// group (added into at p0..p1: pieces of one group sum) or null
template <typename T>
void columns_backward(const Geometry& g, const T* __restrict x,
                      const T* offsets, const T* __restrict grad_cols,
                      int64_t base, int64_t p0, int64_t p1, T* grad_x,
                      int64_t lo, T* grad_offsets) {
  const int64_t taps = g.kernel_h * g.kernel_w, n = g.channels;
  for (int64_t l = 0; l < p1 - p0; ++l) {
    const int64_t p = p0 + l;
    for (int64_t tap = 0; tap < taps; ++tap) {
      const Sample<T> s = locate(g, offsets, base, p, tap);
      T dw[4] = {0, 0, 0, 0};
      if (s.inside) {
        const T* gc = grad_cols + column_row(g, l, tap) * g.channels;
        for (int q = 0; q < 4; ++q) {
          if (!s.valid[q]) continue;
          const T* xr = x + s.row[q] * g.channels;
          if (grad_x && grad_offsets)
            dw[q] = dot_axpy<T, true, true>(
                gc, xr, grad_x + (s.row[q] - lo) * g.channels, s.weight[q], n);
          else if (grad_x)
            dot_axpy<T, false, true>(gc, xr, grad_x + (s.row[q] - lo) * g.channels,
                                     s.weight[q], n);
          else
            dw[q] = dot_axpy<T, true, false>(gc, xr, nullptr, 0, n);
        }
      }
      if (!grad_offsets) continue;
      // derivatives of (1-ly, ly) x (1-lx, lx) w.r.t. (y, x)
      const T ly = s.inside ? s.ly : 0, lx = s.inside ? s.lx : 0;
      grad_offsets[(2 * tap) * g.plane + p] +=
          (dw[2] - dw[0]) * (1 - lx) + (dw[3] - dw[1]) * lx;
      grad_offsets[(2 * tap + 1) * g.plane + p] +=
          (dw[1] - dw[0]) * (1 - ly) + (dw[3] - dw[2]) * ly;
    }
  }
}

}  // namespace

#define SEGEXT_DEFINE(T, SUFFIX)                                             \
  extern "C" void segext_dcn_columns_##SUFFIX(                               \
      const Geometry* g, const T* x, const T* offsets, int64_t base,         \
      int64_t p0, int64_t p1, T* cols) {                                     \
    columns<T>(*g, x, offsets, base, p0, p1, cols);                          \
  }                                                                          \
  extern "C" void segext_dcn_row_range_##SUFFIX(                             \
      const Geometry* g, const T* offsets, int64_t base, int64_t p0,         \
      int64_t p1, int64_t* lo_hi) {                                          \
    row_range<T>(*g, offsets, base, p0, p1, lo_hi);                          \
  }                                                                          \
  extern "C" void segext_dcn_columns_backward_##SUFFIX(                      \
      const Geometry* g, const T* x, const T* offsets, const T* grad_cols,   \
      int64_t base, int64_t p0, int64_t p1, T* grad_x, int64_t lo,           \
      T* grad_offsets) {                                                     \
    columns_backward<T>(*g, x, offsets, grad_cols, base, p0, p1, grad_x, lo, \
                        grad_offsets);                                       \
  }

SEGEXT_DEFINE(float, f32)
SEGEXT_DEFINE(double, f64)
