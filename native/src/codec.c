/* The 17-byte frame codec. Twin: runtime/protocol.py (encode_frame, parse_header, split_frames).
 * Argument handling copies what the twin's struct/len/slice calls do, so bad calls raise the same
 * exception types (struct.error for header fields, TypeError for non-buffers, ...). */
#include "native.h"

#include <string.h>

Py_ssize_t clv_header_offset(Py_ssize_t pos, Py_ssize_t end) {
    Py_ssize_t off = pos;
    if (off < 0) {
        if (off + end < 0) {
            PyErr_Format(clv_struct_error, "offset %zd out of range for %zd-byte buffer", pos, end);
            return -1;
        }
        off += end;
    }
    if (end - off < CLV_HEADER_SIZE) {
        PyErr_Format(clv_struct_error, "not enough data to unpack %d bytes at offset %zd", CLV_HEADER_SIZE,
                     pos);
        return -1;
    }
    return off;
}

PyObject *clv_slice_bytes(const char *buf, Py_ssize_t end, Py_ssize_t start, Py_ssize_t stop) {
    if (start < 0) { start += end; if (start < 0) start = 0; } else if (start > end) start = end;
    if (stop < 0) { stop += end; if (stop < 0) stop = 0; } else if (stop > end) stop = end;
    return PyBytes_FromStringAndSize(buf + start, stop > start ? stop - start : 0);
}

/* A header field for struct's unsigned formats: an int (or __index__) in [0, max], else struct.error. */
static int header_field(PyObject *o, uint64_t max, const char *what, uint64_t *out) {
    if (!PyIndex_Check(o)) {
        PyErr_SetString(clv_struct_error, "required argument is not an integer");
        return -1;
    }
    PyObject *v = PyNumber_Index(o);
    if (v == NULL) return -1;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x < 0 || (uint64_t)x > max) {
        PyErr_Format(clv_struct_error, "'%s' format requires 0 <= number <= %llu", what,
                     (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

static PyObject *encode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"agent_id", "opcode", "payload"};
    PyObject *a[3];
    if (clv_parse_args("encode_frame", args, nargs, kwnames, names, 3, 3, a) < 0) return NULL;
    Py_ssize_t size = PyObject_Size(a[2]); /* the twin calls len(payload) first */
    if (size < 0) return NULL;
    uint64_t agent_id, opcode;
    if (header_field(a[0], 0xFFFFFFFFu, "I", &agent_id) < 0 || header_field(a[1], 0xFF, "B", &opcode) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[2], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "can't concat %.100s to bytes", Py_TYPE(a[2])->tp_name);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, CLV_HEADER_SIZE + view.len);
    if (out != NULL) {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
        clv_put_le32(p, CLV_MAGIC);
        clv_put_le32(p + 4, (uint32_t)agent_id);
        p[8] = (unsigned char)opcode;
        clv_put_le64(p + 9, (uint64_t)size);
        if (view.len) memcpy(p + CLV_HEADER_SIZE, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    return out;
}

static PyObject *parse_header(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"buf", "pos"};
    PyObject *a[2];
    if (clv_parse_args("parse_header", args, nargs, kwnames, names, 2, 1, a) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t pos = 0;
    if (a[1] != NULL) {
        pos = PyNumber_AsSsize_t(a[1], PyExc_OverflowError);
        if (pos == -1 && PyErr_Occurred()) { PyBuffer_Release(&view); return NULL; }
    }
    PyObject *out = NULL;
    Py_ssize_t off = clv_header_offset(pos, view.len);
    if (off >= 0) {
        const unsigned char *p = (const unsigned char *)view.buf + off;
        out = Py_BuildValue("(kkBK)", (unsigned long)clv_get_le32(p), (unsigned long)clv_get_le32(p + 4),
                            p[8], (unsigned long long)clv_get_le64(p + 9));
    }
    PyBuffer_Release(&view);
    return out;
}

/* The limit `size > max_payload` compares against: an int is reduced to a u64 threshold (all sizes
 * pass above 2**64-1, none below 0); anything else is compared by Python on every header. */
typedef struct {
    PyObject *obj; /* non-NULL: generic comparison */
    int never, always;
    uint64_t limit;
} size_limit;

static int limit_init(size_limit *lim, PyObject *max_payload) {
    memset(lim, 0, sizeof *lim);
    if (max_payload == NULL) { lim->limit = CLV_MAX_PAYLOAD; return 0; }
    if (!PyLong_Check(max_payload)) { lim->obj = max_payload; return 0; }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(max_payload, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow < 0 || (!overflow && x < 0)) lim->always = 1;
    else if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(max_payload);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); lim->never = 1; }
        else lim->limit = u;
    } else lim->limit = (uint64_t)x;
    return 0;
}

static int limit_exceeded(const size_limit *lim, uint64_t size) { /* 1, 0, or -1 with an exception */
    if (lim->obj != NULL) {
        PyObject *s = PyLong_FromUnsignedLongLong(size);
        if (s == NULL) return -1;
        int r = PyObject_RichCompareBool(s, lim->obj, Py_GT);
        Py_DECREF(s);
        return r;
    }
    if (lim->always) return 1;
    if (lim->never) return 0;
    return size > lim->limit;
}

/* What the twin does when `pos` is not a C-sized int (or `buf` not a buffer): it only fails if the loop
 * condition `len(buf) - pos >= 17` holds, else it returns ([], pos, SPLIT_OK). The pending exception is
 * kept in that case; returns 1 to raise it, 0 when the empty result applies, -1 on a new error. */
int clv_loop_would_run(PyObject *buf, PyObject *pos) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_ssize_t n = PyObject_Size(buf);
    PyObject *end = n < 0 ? NULL : PyLong_FromSsize_t(n);
    PyObject *diff = end ? PyNumber_Subtract(end, pos) : NULL;
    Py_XDECREF(end);
    PyObject *hs = diff ? PyLong_FromLong(CLV_HEADER_SIZE) : NULL;
    int r = hs ? PyObject_RichCompareBool(diff, hs, Py_GE) : -1;
    Py_XDECREF(diff);
    Py_XDECREF(hs);
    if (r < 0) {
        Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb);
        return -1;
    }
    if (r) { PyErr_Restore(et, ev, tb); return 1; }
    Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb);
    return 0;
}

static PyObject *empty_result(PyObject *pos) {
    PyObject *frames = PyList_New(0);
    if (frames == NULL) return NULL;
    return Py_BuildValue("(NOi)", frames, pos, CLV_SPLIT_OK);
}

static PyObject *split_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"buf", "pos", "max_payload"};
    PyObject *a[3];
    if (clv_parse_args("split_frames", args, nargs, kwnames, names, 3, 1, a) < 0) return NULL;
    PyObject *pos_obj = a[1];
    PyObject *zero = NULL;
    if (pos_obj == NULL) pos_obj = zero = PyLong_FromLong(0);
    if (pos_obj == NULL) return NULL;
    PyObject *result = NULL, *frames = NULL;
    Py_buffer view = {0};
    Py_ssize_t pos = PyNumber_AsSsize_t(pos_obj, PyExc_OverflowError);
    if (pos == -1 && PyErr_Occurred()) {
        int r = clv_loop_would_run(a[0], pos_obj);
        if (r == 0) result = empty_result(pos_obj);
        goto done;
    }
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) < 0) {
        view.obj = NULL;
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        Py_ssize_t n = PyObject_Size(a[0]);
        if (n < 0) { Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb); goto done; }
        if (n - pos < CLV_HEADER_SIZE) {
            Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb);
            result = empty_result(pos_obj);
        } else PyErr_Restore(et, ev, tb);
        goto done;
    }
    size_limit lim;
    if (limit_init(&lim, a[2]) < 0) goto done;
    frames = PyList_New(0);
    if (frames == NULL) goto done;
    const char *base = view.buf;
    Py_ssize_t end = view.len;
    int status = CLV_SPLIT_OK;
    while (end - pos >= CLV_HEADER_SIZE) {
        Py_ssize_t off = clv_header_offset(pos, end);
        if (off < 0) goto done;
        const unsigned char *h = (const unsigned char *)base + off;
        if (clv_get_le32(h) != CLV_MAGIC) { status = CLV_SPLIT_BAD_MAGIC; break; }
        uint64_t size = clv_get_le64(h + 9);
        int over = limit_exceeded(&lim, size);
        if (over < 0) goto done;
        if (over) { status = CLV_SPLIT_OVERSIZE; break; }
        if (size > (uint64_t)(end - pos - CLV_HEADER_SIZE)) break;
        Py_ssize_t stop = pos + CLV_HEADER_SIZE + (Py_ssize_t)size;
        PyObject *payload = pos >= 0 ? PyBytes_FromStringAndSize(base + pos + CLV_HEADER_SIZE, (Py_ssize_t)size)
                                     : clv_slice_bytes(base, end, pos + CLV_HEADER_SIZE, stop);
        if (payload == NULL) goto done;
        PyObject *item = Py_BuildValue("(kBN)", (unsigned long)clv_get_le32(h + 4), h[8], payload);
        if (item == NULL) goto done;
        int rc = PyList_Append(frames, item);
        Py_DECREF(item);
        if (rc < 0) goto done;
        pos = stop;
    }
    result = Py_BuildValue("(Oni)", frames, pos, status);
done:
    if (view.obj != NULL) PyBuffer_Release(&view);
    Py_XDECREF(frames);
    Py_XDECREF(zero);
    return result;
}

PyMethodDef clv_codec_methods[] = {
    {"encode_frame", (PyCFunction)(void (*)(void))encode_frame, METH_FASTCALL | METH_KEYWORDS,
     "encode_frame(agent_id, opcode, payload) -> bytes: one frame (header + payload)."},
    {"parse_header", (PyCFunction)(void (*)(void))parse_header, METH_FASTCALL | METH_KEYWORDS,
     "parse_header(buf, pos=0) -> (magic, agent_id, opcode, size) of the header at pos."},
    {"split_frames", (PyCFunction)(void (*)(void))split_frames, METH_FASTCALL | METH_KEYWORDS,
     "split_frames(buf, pos=0, max_payload=MAX_PAYLOAD) -> (frames, pos, status)."},
    {NULL, NULL, 0, NULL},
};
