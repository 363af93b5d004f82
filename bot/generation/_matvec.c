/*
 * bot.generation._matvec: y = x @ W.T + b for a few rows of x, reading W once, on one CPU thread.
 *
 * Generating one token for one conversation reads every weight of the model once and
 * does two flops per weight: decoding at batch 1 is bound by memory bandwidth, not by
 * arithmetic. On the project's 2-core Zen 4 machine the BLAS kernels behind torch's
 * linear layers streamed GPT-2's layer weights at about half the speed one thread sums
 * a large buffer; walking the [out, in] weight in memory order as one sequential stream
 * of dot products reads it at 0.83-0.86 of that speed (`python -m bench.matvec`).
 * 256-bit AVX2 did as well as 512-bit AVX-512 here (memory, not arithmetic, is the
 * limit), so there is one kernel; the CPU is asked at import whether it can run it.
 *
 * Layout: x is [rows, k], w is [n, k] (PyTorch's Linear layout), b is [n] or absent,
 * y is [rows, n]; all float32 and contiguous. Rows go in groups of up to four that share
 * each load of w, so a handful of rows costs little more than one.
 * The Python side (bot/generation/kernels.py) checks dtypes, shapes and contiguity before calling:
 * this module trusts the addresses it is given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define THUMBTUNE_X86 1
#include <immintrin.h>

__attribute__((target("avx2,fma"), always_inline)) static inline float
hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* R rows (1..4, a constant at every call site: the loops over r unroll and the eight
 * accumulators stay in registers) against one weight row, two accumulators per row.
 * More rows per group were slower here: their activations no longer fit in L1 beside
 * the weight stream, and a kernel that blocks for that is a GEMM, which BLAS does well. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dots_avx2(const float *wj, const float *x, Py_ssize_t k, const int R, float *out)
{
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 16 <= k; i += 16) {
        const __m256 w0 = _mm256_loadu_ps(wj + i), w1 = _mm256_loadu_ps(wj + i + 8);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * k + i), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + r * k + i + 8), acc[r][1]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float s = hsum_avx2(_mm256_add_ps(acc[r][0], acc[r][1]));
        for (Py_ssize_t t = i; t < k; t++)
            s += wj[t] * x[r * k + t];
        out[r] = s;
    }
}

__attribute__((target("avx2,fma"))) static void
matvec_avx2(const float *x, const float *w, const float *b, float *y,
            Py_ssize_t rows, Py_ssize_t k, Py_ssize_t n)
{
    float out[4];
    for (Py_ssize_t j = 0; j < n; j++) {
        const float *wj = w + j * k;
        const float bias = b ? b[j] : 0.f;
        /* Groups of four rows; the weight row is re-read from L1 for each group. */
        Py_ssize_t r = 0;
        for (; r + 4 <= rows; r += 4) {
            dots_avx2(wj, x + r * k, k, 4, out);
            for (int q = 0; q < 4; q++) y[(r + q) * n + j] = out[q] + bias;
        }
        const float *xr = x + r * k;
        switch (rows - r) {
        case 3: dots_avx2(wj, xr, k, 3, out); break;
        case 2: dots_avx2(wj, xr, k, 2, out); break;
        case 1: dots_avx2(wj, xr, k, 1, out); break;
        default: continue;
        }
        for (Py_ssize_t q = 0; q < rows - r; q++) y[(r + q) * n + j] = out[q] + bias;
    }
}
#endif /* x86-64 with GCC or Clang */

/* ---------------------------------------------------------------- Python */

static int have_avx2_fma = 0;

PyDoc_STRVAR(available_doc,
"available() -> bool\n\n"
"Whether this CPU runs the kernel (x86-64 with AVX2 and FMA, as the OS reports).");

static PyObject *
available(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(args))
{
    return PyBool_FromLong(have_avx2_fma);
}

PyDoc_STRVAR(matvec_doc,
"matvec(x, w, b, y, rows, k, n) -> None\n\n"
"y[rows, n] = x[rows, k] @ w[n, k].T + b[n]: float32, contiguous, given as addresses\n"
"(b may be 0). The caller guarantees the buffers; the GIL is released meanwhile.");

static PyObject *
matvec(PyObject *Py_UNUSED(self), PyObject *args)
{
    unsigned long long x, w, b, y;
    Py_ssize_t rows, k, n;
    if (!PyArg_ParseTuple(args, "KKKKnnn:matvec", &x, &w, &b, &y, &rows, &k, &n))
        return NULL;
    if (!have_avx2_fma) {
        PyErr_SetString(PyExc_RuntimeError, "matvec: this CPU lacks AVX2 and FMA");
        return NULL;
    }
    if (rows < 0 || k < 0 || n < 0 || x == 0 || w == 0 || y == 0) {
        PyErr_SetString(PyExc_ValueError, "matvec: negative size or null buffer");
        return NULL;
    }
#ifdef THUMBTUNE_X86
    Py_BEGIN_ALLOW_THREADS
    matvec_avx2((const float *)(uintptr_t)x, (const float *)(uintptr_t)w,
                b ? (const float *)(uintptr_t)b : NULL, (float *)(uintptr_t)y, rows, k, n);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"available", available, METH_NOARGS, available_doc},
    {"matvec", matvec, METH_VARARGS, matvec_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_matvec",
    "Few-row matrix products that stream the weights at memory speed (see bot/generation/kernels.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__matvec(void)
{
#ifdef THUMBTUNE_X86
    __builtin_cpu_init();
    /* GCC and Clang also check that the OS saves the AVX registers (XCR0). */
    have_avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return PyModule_Create(&module);
}
