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
 * Layout: x is [..., k], w is [n, k] (PyTorch's Linear layout), b is [n] or None,
 * y is [..., n] with the same leading shape as x; all float32 and C-contiguous. Rows go
 * in groups of up to four that share each load of w, so a handful of rows costs little
 * more than one.
 * The arrays arrive as objects with the buffer protocol (numpy views of the tensors, from
 * bot/generation/kernels.py): their format, shapes, contiguity and writability are checked
 * here, and a call that does not fit raises instead of reading or writing stray memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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

/* A float32 C-contiguous buffer of `obj` into `view`; 0, or -1 with an exception set. */
static int
float_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "matvec: %s must be a C-contiguous%s float32 buffer",
                     name, writable ? ", writable" : "");
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (f[0] == '@' || f[0] == '=' || f[0] == '<')
        f++;  /* native or little-endian: the same on x86-64, the only place the kernel runs */
    if (view->itemsize != 4 || strcmp(f, "f") != 0 || view->ndim < 1) {
        PyErr_Format(PyExc_TypeError, "matvec: %s must hold float32 numbers (format %s, %zd dimensions)",
                     name, view->format ? view->format : "B", (Py_ssize_t)view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int
overlaps(const Py_buffer *a, const Py_buffer *b)
{
    const char *a0 = a->buf, *b0 = b->buf;
    return a0 < b0 + b->len && b0 < a0 + a->len;
}

PyDoc_STRVAR(matvec_doc,
"matvec(x, w, b, y) -> None\n\n"
"y[..., n] = x[..., k] @ w[n, k].T + b[n] (b may be None): float32, C-contiguous objects\n"
"with the buffer protocol (numpy arrays), y writable and apart from the others. Shapes,\n"
"format and contiguity are checked (TypeError, ValueError); the GIL is released meanwhile.");

static PyObject *
matvec(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *xo, *wo, *bo, *yo;
    if (!PyArg_ParseTuple(args, "OOOO:matvec", &xo, &wo, &bo, &yo))
        return NULL;
    if (!have_avx2_fma) {
        PyErr_SetString(PyExc_RuntimeError, "matvec: this CPU lacks AVX2 and FMA");
        return NULL;
    }
    Py_buffer x, w, b, y;
    int got = 0;  /* how many of x, w, y, b are held */
    PyObject *result = NULL;
    if (float_buffer(xo, &x, 0, "x") < 0) goto done;
    got = 1;
    if (float_buffer(wo, &w, 0, "w") < 0) goto done;
    got = 2;
    if (float_buffer(yo, &y, 1, "y") < 0) goto done;
    got = 3;
    if (bo != Py_None) {
        if (float_buffer(bo, &b, 0, "b") < 0) goto done;
        got = 4;
    }
    if (w.ndim != 2) {
        PyErr_SetString(PyExc_ValueError, "matvec: w must be 2-D [n, k]");
        goto done;
    }
    const Py_ssize_t n = w.shape[0], k = w.shape[1];
    if (x.ndim != y.ndim || x.shape[x.ndim - 1] != k || y.shape[y.ndim - 1] != n) {
        PyErr_SetString(PyExc_ValueError, "matvec: x must be [..., k] and y [..., n] for w [n, k]");
        goto done;
    }
    Py_ssize_t rows = 1;
    for (int d = 0; d < x.ndim - 1; d++) {
        if (x.shape[d] != y.shape[d]) {
            PyErr_SetString(PyExc_ValueError, "matvec: x and y must have the same leading shape");
            goto done;
        }
        rows *= x.shape[d];
    }
    if (got == 4 && (b.ndim != 1 || b.shape[0] != n)) {
        PyErr_SetString(PyExc_ValueError, "matvec: b must be [n]");
        goto done;
    }
    if (overlaps(&y, &x) || overlaps(&y, &w) || (got == 4 && overlaps(&y, &b))) {
        PyErr_SetString(PyExc_ValueError, "matvec: y must not share memory with x, w or b");
        goto done;
    }
#ifdef THUMBTUNE_X86
    Py_BEGIN_ALLOW_THREADS
    matvec_avx2(x.buf, w.buf, got == 4 ? b.buf : NULL, y.buf, rows, k, n);
    Py_END_ALLOW_THREADS
#endif
    result = Py_None;
    Py_INCREF(result);
done:
    if (got >= 4) PyBuffer_Release(&b);
    if (got >= 3) PyBuffer_Release(&y);
    if (got >= 2) PyBuffer_Release(&w);
    if (got >= 1) PyBuffer_Release(&x);
    return result;
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
