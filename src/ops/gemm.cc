// Matrix-product reference kernels: Gemm, MatMul, Einsum, Det.
//
// Gemm:   Y[M, N] = alpha * A'[M, K] B'[K, N] + beta * C, A' = transA ? A^T : A, likewise B';
//         C (optional) broadcasts unidirectionally to [M, N].
// MatMul: numpy matmul. A 1-D A is promoted to [1, K] and a 1-D B to [K, 1],
//         the added dim removed from the result; batch dims broadcast.
// Einsum: "ab,bc->ac" style equations with implicit output (labels seen
//         once, in ASCII order, after the ellipsis dims), "..." broadcasting and
//         repeated labels within one operand (diagonals). Evaluated by one
//         loop over every combination of label values: plain, for small ops.
//
// Products loop i -> k -> j so the innermost loop runs over contiguous rows of
// B and Y. Accumulation is in compute_t<T> (float for float16/bfloat16).
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

// Y[m, n] += A[m, k] B[k, n] for one matrix, row-major with the given row strides.
// The element strides of A may describe a transposed matrix.
template <typename C>
void matmul_add(const C* a, int64_t a_row, int64_t a_col, const C* b, int64_t b_row, int64_t b_col, C* y, int64_t m,
                int64_t k, int64_t n) {
  if (b_col == 1) {
    for (int64_t i = 0; i < m; ++i) {
      C* y_row = y + i * n;
      for (int64_t p = 0; p < k; ++p) {
        const C av = a[i * a_row + p * a_col];
        const C* b_row_ptr = b + p * b_row;
        for (int64_t j = 0; j < n; ++j) y_row[j] += av * b_row_ptr[j];
      }
    }
  } else {
    // B transposed: its columns are contiguous, so take dot products along k.
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const C* b_col_ptr = b + j * b_col;
        C sum = 0;
        for (int64_t p = 0; p < k; ++p) sum += a[i * a_row + p * a_col] * b_col_ptr[p * b_row];
        y[i * n + j] += sum;
      }
    }
  }
}

template <typename T>
std::vector<compute_t<T>> to_compute_vector(const Tensor& t) {
  std::vector<compute_t<T>> out(static_cast<size_t>(t.numel()));
  const T* d = t.data<T>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = to_compute(d[i]);
  return out;
}

// A tensor's elements in the compute type: the tensor's own storage when the
// types agree, else a converted copy held in `storage`.
template <typename T>
const compute_t<T>* compute_data(const Tensor& t, std::vector<compute_t<T>>& storage) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    return t.data<T>();
  } else {
    storage = to_compute_vector<T>(t);
    return storage.data();
  }
}

template <typename T>
void run_gemm(KernelContext& ctx, TypeTag<T>) {
  using C = compute_t<T>;
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.rank() != 2 || b.rank() != 2) {
    ctx.fail("A " + a.describe() + " and B " + b.describe() + " must both have rank 2");
  }
  if (b.dtype() != a.dtype()) ctx.fail("A and B have different types");
  const bool trans_a = ctx.node.attr_int("transA", 0) != 0;
  const bool trans_b = ctx.node.attr_int("transB", 0) != 0;
  const C alpha = static_cast<C>(ctx.node.attr_float("alpha", 1.0f));
  const C beta = static_cast<C>(ctx.node.attr_float("beta", 1.0f));
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  if (k != kb) {
    ctx.fail("inner dims differ: A " + a.describe() + (trans_a ? " (transposed)" : "") + ", B " + b.describe() +
             (trans_b ? " (transposed)" : ""));
  }
  std::vector<C> a_store, b_store;
  const C* ac = compute_data<T>(a, a_store);
  const C* bc = compute_data<T>(b, b_store);
  std::vector<C> acc(static_cast<size_t>(m * n), C(0));
  matmul_add(ac, trans_a ? 1 : k, trans_a ? m : 1, bc, trans_b ? 1 : n, trans_b ? k : 1, acc.data(), m, k, n);
  Tensor y(a.dtype(), {m, n});
  T* yd = y.data<T>();
  std::vector<C> cc;
  std::vector<int64_t> c_strides;
  if (ctx.has_input(2)) {
    const Tensor& c = ctx.input(2);
    if (c.dtype() != a.dtype()) ctx.fail("C's type differs from A's");
    if (c.rank() > 2 || broadcast_shapes(ctx, c.shape(), {m, n}) != Shape{m, n}) {
      ctx.fail("C " + c.describe() + " does not broadcast to [" + std::to_string(m) + "," + std::to_string(n) + "]");
    }
    cc = to_compute_vector<T>(c);
    c_strides = broadcast_strides(c.shape(), {m, n});
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      C v = alpha * acc[static_cast<size_t>(i * n + j)];
      if (!cc.empty()) v += beta * cc[static_cast<size_t>(i * c_strides[0] + j * c_strides[1])];
      yd[i * n + j] = from_compute<T>(v);
    }
  }
  ctx.set_output(0, std::move(y));
}

void gemm(KernelContext& ctx) {
  dispatch<NumericTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_gemm(ctx, tag); });
}

template <typename T>
void run_matmul(KernelContext& ctx, TypeTag<T>) {
  using C = compute_t<T>;
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (b.dtype() != a.dtype()) ctx.fail("A and B have different types");
  if (a.rank() < 1 || b.rank() < 1) ctx.fail("MatMul inputs must have rank >= 1");
  Shape sa = a.shape(), sb = b.shape();
  if (sa.size() == 1) sa.insert(sa.begin(), 1);
  if (sb.size() == 1) sb.push_back(1);
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  if (sb[sb.size() - 2] != k) ctx.fail("inner dims differ: A " + a.describe() + ", B " + b.describe());
  const Shape batch_a(sa.begin(), sa.end() - 2), batch_b(sb.begin(), sb.end() - 2);
  const Shape batch = broadcast_shapes(ctx, batch_a, batch_b);
  const std::vector<int64_t> stride_a = broadcast_strides(batch_a, batch);
  const std::vector<int64_t> stride_b = broadcast_strides(batch_b, batch);

  Shape out_shape = batch;
  if (a.rank() > 1) out_shape.push_back(m);
  if (b.rank() > 1) out_shape.push_back(n);
  Tensor y(a.dtype(), out_shape);
  T* yd = y.data<T>();
  std::vector<C> a_store, b_store;
  const C* ac = compute_data<T>(a, a_store);
  const C* bc = compute_data<T>(b, b_store);
  std::vector<C> acc(static_cast<size_t>(m * n));
  int64_t out_index = 0;
  const std::vector<int64_t> strides[2] = {stride_a, stride_b};
  for_each_index(batch, strides, [&](const int64_t* offsets) {
    std::fill(acc.begin(), acc.end(), C(0));
    matmul_add(ac + offsets[0] * m * k, k, 1, bc + offsets[1] * k * n, n, 1, acc.data(), m, k, n);
    T* out = yd + out_index * m * n;
    for (int64_t i = 0; i < m * n; ++i) out[i] = from_compute<T>(acc[static_cast<size_t>(i)]);
    ++out_index;
  });
  ctx.set_output(0, std::move(y));
}

void matmul(KernelContext& ctx) {
  dispatch<NumericTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_matmul(ctx, tag); });
}

// ---- Einsum ----

constexpr int kEllipsisBase = 52;  // labels 0..51 are a-z, A-Z; 52.. the ellipsis dims

int label_of(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return 26 + (c - 'A');
  return -1;
}

// Number of letter labels in a term (the ellipsis not counted).
int64_t count_labels(const std::string& term) {
  return std::count_if(term.begin(), term.end(), [](char c) { return label_of(c) >= 0; });
}

// Parses one term into labels; "..." becomes kEllipsisBase + (position among
// the ellipsis dims, aligned to the right across operands).
std::vector<int> parse_term(const KernelContext& ctx, const std::string& term, int64_t rank, int64_t ellipsis_rank,
                            bool is_output) {
  std::vector<int> labels;
  bool seen_ellipsis = false;
  for (size_t i = 0; i < term.size(); ++i) {
    const char c = term[i];
    if (c == ' ') continue;
    if (c == '.') {
      if (term.compare(i, 3, "...") != 0 || seen_ellipsis) {
        ctx.fail("malformed ellipsis in equation term '" + term + "'");
      }
      seen_ellipsis = true;
      i += 2;
      const int64_t dims = is_output ? ellipsis_rank : rank - count_labels(term);
      if (dims < 0 || dims > ellipsis_rank) ctx.fail("term '" + term + "' does not match its operand's rank");
      for (int64_t d = 0; d < dims; ++d) labels.push_back(static_cast<int>(kEllipsisBase + ellipsis_rank - dims + d));
      continue;
    }
    const int label = label_of(c);
    if (label < 0) ctx.fail(std::string("invalid character '") + c + "' in equation");
    labels.push_back(label);
  }
  if (!is_output && static_cast<int64_t>(labels.size()) != rank) {
    ctx.fail("term '" + term + "' has " + std::to_string(labels.size()) + " labels but its operand has rank " +
             std::to_string(rank));
  }
  return labels;
}

template <typename T>
void run_einsum(KernelContext& ctx, TypeTag<T>) {
  using C = compute_t<T>;
  std::string eq = ctx.node.attr_string("equation", "");
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms;
  for (size_t start = 0;;) {
    const size_t comma = lhs.find(',', start);
    terms.push_back(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  const size_t num_ops = ctx.num_inputs();
  if (terms.size() != num_ops) {
    ctx.fail("equation '" + eq + "' has " + std::to_string(terms.size()) + " terms for " + std::to_string(num_ops) +
             " inputs");
  }
  // Ellipsis rank: the largest number of dims any operand's "..." covers.
  int64_t ellipsis_rank = 0;
  for (size_t i = 0; i < num_ops; ++i) {
    const Tensor& t = ctx.input(i);
    if (t.dtype() != ctx.input(0).dtype()) ctx.fail("inputs have different types");
    if (terms[i].find("...") != std::string::npos) {
      ellipsis_rank = std::max(ellipsis_rank, t.rank() - count_labels(terms[i]));
    }
  }
  constexpr int kMaxLabels = kEllipsisBase + 16;
  if (ellipsis_rank > 16) ctx.unsupported("more than 16 ellipsis dims");
  std::array<int64_t, kMaxLabels> size;
  size.fill(-1);
  std::vector<std::vector<int>> op_labels(num_ops);
  std::array<int, kMaxLabels> count{};
  for (size_t i = 0; i < num_ops; ++i) {
    const Tensor& t = ctx.input(i);
    op_labels[i] = parse_term(ctx, terms[i], t.rank(), ellipsis_rank, false);
    for (size_t d = 0; d < op_labels[i].size(); ++d) {
      const int l = op_labels[i][d];
      const int64_t dim = t.dim(static_cast<int>(d));
      ++count[static_cast<size_t>(l)];
      int64_t& s = size[static_cast<size_t>(l)];
      if (l >= kEllipsisBase && (s == 1 || s == -1)) {
        s = std::max(s, dim);  // broadcast
      } else if (s == -1) {
        s = dim;
      } else if (s != dim && !(l >= kEllipsisBase && dim == 1)) {
        ctx.fail("label sizes disagree in equation '" + eq + "'");
      }
    }
  }
  std::vector<int> out_labels;
  if (arrow != std::string::npos) {
    out_labels = parse_term(ctx, eq.substr(arrow + 2), 0, ellipsis_rank, true);
    for (int l : out_labels) {
      if (size[static_cast<size_t>(l)] < 0) ctx.fail("output label not in any input of '" + eq + "'");
    }
  } else {
    for (int l = kEllipsisBase; l < kEllipsisBase + ellipsis_rank; ++l) out_labels.push_back(l);
    // Labels seen once, in ASCII order as numpy sorts them: A-Z (26..51) before a-z (0..25).
    for (int i = 0; i < kEllipsisBase; ++i) {
      const int l = (i + 26) % kEllipsisBase;
      if (count[static_cast<size_t>(l)] == 1) out_labels.push_back(l);
    }
  }
  // Loop order: output labels, then summed labels.
  std::vector<int> loop = out_labels;
  for (int l = 0; l < kMaxLabels; ++l) {
    if (size[static_cast<size_t>(l)] >= 0 && std::find(loop.begin(), loop.end(), l) == loop.end()) loop.push_back(l);
  }
  Shape loop_shape, out_shape;
  for (int l : loop) loop_shape.push_back(size[static_cast<size_t>(l)]);
  for (int l : out_labels) out_shape.push_back(size[static_cast<size_t>(l)]);
  // Per operand (inputs, then the output) the element stride of each loop label.
  std::vector<std::vector<int64_t>> strides(num_ops + 1, std::vector<int64_t>(loop.size(), 0));
  auto add_strides = [&](size_t op, const std::vector<int>& labels, const Shape& shape) {
    const std::vector<int64_t> own = contiguous_strides(shape);
    for (size_t d = 0; d < labels.size(); ++d) {
      if (shape[d] == 1) continue;  // broadcast
      const size_t pos = static_cast<size_t>(std::find(loop.begin(), loop.end(), labels[d]) - loop.begin());
      strides[op][pos] += own[d];
    }
  };
  std::vector<std::vector<C>> data(num_ops);
  for (size_t i = 0; i < num_ops; ++i) {
    add_strides(i, op_labels[i], ctx.input(i).shape());
    data[i] = to_compute_vector<T>(ctx.input(i));
  }
  add_strides(num_ops, out_labels, out_shape);
  std::vector<C> acc(static_cast<size_t>(checked_numel(out_shape)), C(0));
  std::vector<int64_t> index(loop.size(), 0), offsets(num_ops + 1, 0);
  const int64_t total = checked_numel(loop_shape);
  for (int64_t it = 0; it < total; ++it) {
    C prod = 1;
    for (size_t i = 0; i < num_ops; ++i) prod *= data[i][static_cast<size_t>(offsets[i])];
    acc[static_cast<size_t>(offsets[num_ops])] += prod;
    for (size_t d = loop.size(); d-- > 0;) {
      ++index[d];
      for (size_t i = 0; i <= num_ops; ++i) offsets[i] += strides[i][d];
      if (index[d] < loop_shape[d]) break;
      for (size_t i = 0; i <= num_ops; ++i) offsets[i] -= strides[i][d] * loop_shape[d];
      index[d] = 0;
    }
  }
  Tensor y(ctx.input(0).dtype(), out_shape);
  T* yd = y.data<T>();
  for (size_t i = 0; i < acc.size(); ++i) yd[i] = from_compute<T>(acc[i]);
  ctx.set_output(0, std::move(y));
}

void einsum(KernelContext& ctx) {
  if (ctx.num_inputs() == 0) ctx.fail("Einsum needs at least one input");
  dispatch<NumericTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_einsum(ctx, tag); });
}

// Det: X [.., M, M] -> [..]; Gaussian elimination with partial pivoting in
// double (the product of the pivots, negated per row swap).
template <typename T>
void run_det(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2 || x.dim(x.rank() - 1) != x.dim(x.rank() - 2)) {
    ctx.fail("input " + x.describe() + " must be [.., M, M]");
  }
  const int64_t m = x.dim(x.rank() - 1);
  const Shape out_shape(x.shape().begin(), x.shape().end() - 2);
  Tensor y(x.dtype(), out_shape);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  std::vector<double> a(static_cast<size_t>(m * m));
  for (int64_t b = 0; b < y.numel(); ++b) {
    for (int64_t i = 0; i < m * m; ++i) a[static_cast<size_t>(i)] = static_cast<double>(to_compute(xd[b * m * m + i]));
    auto at = [&](int64_t r, int64_t c) -> double& { return a[static_cast<size_t>(r * m + c)]; };
    double det = 1;
    for (int64_t col = 0; col < m && det != 0; ++col) {
      int64_t pivot = col;
      for (int64_t r = col + 1; r < m; ++r) {
        if (std::fabs(at(r, col)) > std::fabs(at(pivot, col))) pivot = r;
      }
      if (at(pivot, col) == 0) {
        det = 0;
        break;
      }
      if (pivot != col) {
        for (int64_t c = 0; c < m; ++c) std::swap(at(pivot, c), at(col, c));
        det = -det;
      }
      det *= at(col, col);
      for (int64_t r = col + 1; r < m; ++r) {
        const double f = at(r, col) / at(col, col);
        for (int64_t c = col; c < m; ++c) at(r, c) -= f * at(col, c);
      }
    }
    yd[b] = from_compute<T>(static_cast<compute_t<T>>(det));
  }
  ctx.set_output(0, std::move(y));
}

void det(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_det(ctx, tag); });
}

}  // namespace

std::span<const OpDef> gemm_ops() {
  static constexpr OpDef kOps[] = {
      {"Gemm", "", gemm},
      {"MatMul", "", matmul},
      {"Einsum", "", einsum},
      {"Det", "", det},
  };
  return kOps;
}

}  // namespace kvant
