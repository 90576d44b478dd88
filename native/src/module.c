/* clove_gym.native._native: the runtime's C fast paths as one CPython extension.
 * Each part (codec, data plane, trace ring) has a pure-Python twin in clove_gym.runtime that
 * defines its behaviour; tests/native prove both give the same bytes and results. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native", "C fast paths of the clove-gym runtime.", -1, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "ABI_VERSION", 1) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
