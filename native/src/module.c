/* clove_gym.native._native: the runtime's C fast paths as one CPython extension.
 * Each part (codec, data plane, trace ring) has a pure-Python twin in clove_gym.runtime that
 * defines its behaviour; tests/native prove both give the same bytes and results. */
#include "native.h"

#include <string.h>

PyObject *clv_struct_error, *clv_json_loads, *clv_json_dumps;

/* ---- clv_buf ----------------------------------------------------------------------------------- */
int clv_buf_reserve(clv_buf *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    size_t want = b->cap ? b->cap : 256;
    while (want - b->len < extra) {
        if (want > SIZE_MAX / 2) { PyErr_NoMemory(); return -1; }
        want *= 2;
    }
    char *p = PyMem_Realloc(b->data, want);
    if (p == NULL) { PyErr_NoMemory(); return -1; }
    b->data = p;
    b->cap = want;
    return 0;
}

int clv_buf_put(clv_buf *b, const void *p, size_t n) {
    if (clv_buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int clv_buf_puts(clv_buf *b, const char *s) { return clv_buf_put(b, s, strlen(s)); }

int clv_buf_putc(clv_buf *b, char c) {
    if (b->len == b->cap && clv_buf_reserve(b, 1) < 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

int clv_buf_put_u64(clv_buf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    return clv_buf_put(b, tmp + i, (size_t)(24 - i));
}

int clv_buf_put_i64(clv_buf *b, int64_t v) {
    if (v >= 0) return clv_buf_put_u64(b, (uint64_t)v);
    if (clv_buf_putc(b, '-') < 0) return -1;
    return clv_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
}

void clv_buf_free(clv_buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- argument parsing -------------------------------------------------------------------------- */
int clv_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                   const char *const *names, int nnames, int nreq, PyObject **out) {
    if (nargs > nnames) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)", fname,
                     nnames, nargs);
        return -1;
    }
    for (int i = 0; i < nnames; i++) out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        const char *utf8 = PyUnicode_AsUTF8(key);
        if (utf8 == NULL) return -1;
        for (int i = 0; i < nnames; i++) {
            if (strcmp(utf8, names[i]) == 0) { found = i; break; }
        }
        if (found < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (out[found] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[found]);
            return -1;
        }
        out[found] = args[nargs + k];
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)", fname, names[i],
                         i + 1);
            return -1;
        }
    }
    return 0;
}

/* ---- module ------------------------------------------------------------------------------------ */
static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native", "C fast paths of the clove-gym runtime.", -1, clv_codec_methods,
};

static int import_attr(const char *module, const char *attr, PyObject **out) {
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) return -1;
    *out = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return *out == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__native(void) {
    if (clv_struct_error == NULL) {
        if (import_attr("struct", "error", &clv_struct_error) < 0) return NULL;
        if (import_attr("json", "loads", &clv_json_loads) < 0) return NULL;
        if (import_attr("json", "dumps", &clv_json_dumps) < 0) return NULL;
        if (clv_json_init() < 0) return NULL;
        clv_tracering_init();
    }
    if (PyType_Ready(&clv_TraceRingType) < 0 || PyType_Ready(&clv_DataPlaneType) < 0) return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "ABI_VERSION", 1) < 0 ||
        PyModule_AddObjectRef(m, "TraceRing", (PyObject *)&clv_TraceRingType) < 0 ||
        PyModule_AddObjectRef(m, "DataPlane", (PyObject *)&clv_DataPlaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
