/* TraceRing: the `.clvtrace` writer (runtime/trace/FORMAT.md). Twin: runtime/trace/writer.py
 * (TraceWriter), whose argument checks, clamping and buffering rules this copies so both write the
 * same bytes. The data plane appends records through clv_tracering_append() without calling Python. */
#include "native.h"

#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_HEADER_SIZE 32
#define RECORD_SIZE 60
#define NUM_KINDS 4
#define U32_MAX 0xFFFFFFFFu

typedef struct {
    PyObject_HEAD
    int fd, owns_fd, closed;
    char *buf;
    size_t len;
    Py_ssize_t buffer_size;
    uint32_t cap;
    unsigned long long records, bytes_written;
    PyObject *path; /* str/bytes, or None for a caller's fd */
} TraceRing;

/* ---- CRC-32 (zlib polynomial). By hand: the build links no zlib and Python's zlib module has no C
 * API; slicing-by-4 keeps it fast. ----------------------------------------------------------------- */
static uint32_t crc_table[4][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 4; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
    }
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 4) {
        crc ^= (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        crc = crc_table[3][crc & 0xFF] ^ crc_table[2][(crc >> 8) & 0xFF] ^ crc_table[1][(crc >> 16) & 0xFF] ^
              crc_table[0][crc >> 24];
        p += 4;
        n -= 4;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- writing ----------------------------------------------------------------------------------- */
/* Everything out, retrying short writes and EINTR (os.write does the same under PEP 475). */
static int write_all(TraceRing *self, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(self->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        self->bytes_written += (unsigned long long)w;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int ring_flush(TraceRing *self) {
    if (self->len == 0) return 0;
    size_t n = self->len;
    self->len = 0; /* like the twin: the buffer is cleared before the write */
    return write_all(self, self->buf, n);
}

static uint32_t sat32(int64_t v) { return v < 0 ? 0 : v > (int64_t)U32_MAX ? U32_MAX : (uint32_t)v; }

static void fill_record(unsigned char *r, const clv_trace_rec *rec, size_t req_st, size_t resp_st,
                        uint64_t t_ns) {
    uint32_t rec_len = (uint32_t)(RECORD_SIZE + req_st + resp_st);
    clv_put_le32(r, rec_len);
    clv_put_le64(r + 8, t_ns);
    clv_put_le32(r + 16, sat32(rec->agent_id));
    clv_put_le32(r + 20, sat32(rec->peer_id));
    clv_put_le64(r + 24, rec->aux);
    clv_put_le32(r + 32, sat32(rec->service_ns));
    clv_put_le32(r + 36, sat32(rec->queue_ns));
    clv_put_le32(r + 40, sat32(rec->world_id));
    clv_put_le32(r + 44, rec->req_len > U32_MAX ? U32_MAX : (uint32_t)rec->req_len);
    clv_put_le32(r + 48, rec->resp_len > U32_MAX ? U32_MAX : (uint32_t)rec->resp_len);
    r[52] = (unsigned char)req_st; r[53] = (unsigned char)(req_st >> 8);
    r[54] = (unsigned char)resp_st; r[55] = (unsigned char)(resp_st >> 8);
    r[56] = (unsigned char)rec->kind;
    r[57] = (unsigned char)rec->opcode;
    r[58] = (unsigned char)rec->result;
    r[59] = 0;
    if (req_st) memcpy(r + RECORD_SIZE, rec->req, req_st);
    if (resp_st) memcpy(r + RECORD_SIZE + req_st, rec->resp, resp_st);
    clv_put_le32(r + 4, crc32_update(0, r + 8, rec_len - 8));
}

/* rec->t_ns is taken as already clamped to >= 0 by the caller; u32 fields are saturated here. */
static int ring_append(TraceRing *self, const clv_trace_rec *rec, uint64_t t_ns) {
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "trace writer is closed");
        return -1;
    }
    size_t req_st = rec->req_len < self->cap ? rec->req_len : self->cap;
    size_t resp_st = rec->resp_len < self->cap ? rec->resp_len : self->cap;
    size_t rec_len = RECORD_SIZE + req_st + resp_st;
    if (self->len + rec_len > (size_t)self->buffer_size && ring_flush(self) < 0) return -1;
    if (rec_len > (size_t)self->buffer_size) {
        unsigned char *tmp = PyMem_Malloc(rec_len);
        if (tmp == NULL) { PyErr_NoMemory(); return -1; }
        fill_record(tmp, rec, req_st, resp_st, t_ns);
        int rc = write_all(self, (const char *)tmp, rec_len);
        PyMem_Free(tmp);
        if (rc < 0) return -1;
    } else {
        fill_record((unsigned char *)self->buf + self->len, rec, req_st, resp_st, t_ns);
        self->len += rec_len;
    }
    self->records++;
    return 0;
}

int clv_tracering_append(PyObject *ring, const clv_trace_rec *rec) {
    return ring_append((TraceRing *)ring, rec, rec->t_ns < 0 ? 0 : (uint64_t)rec->t_ns);
}

/* ---- Python-facing argument conversion (mirrors writer.py's checks) ---------------------------- */
/* `0 <= value <= max` or ValueError naming the field; non-ints fail as in the twin (the range test
 * raises TypeError, struct.pack raises struct.error for a float in range). */
static int small_field(PyObject *o, const char *name, long max, uint32_t *out) {
    int strict = strcmp(name, "kind") == 0; /* the twin tests `kind < 4`, the others `<= 255` */
    if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (overflow || v < 0 || v > max) {
            PyErr_Format(PyExc_ValueError, "%s must be in 0..%ld, got %R", name, max, o);
            return -1;
        }
        *out = (uint32_t)v;
        return 0;
    }
    PyObject *zero = PyLong_FromLong(0), *top = PyLong_FromLong(max);
    int ok = -1;
    if (zero && top) {
        int lo = PyObject_RichCompareBool(zero, o, Py_LE);
        if (strict) { Py_DECREF(top); top = PyLong_FromLong(max + 1); }
        int hi = lo > 0 && top ? PyObject_RichCompareBool(o, top, strict ? Py_LT : Py_LE) : lo;
        if (lo == 0 || hi == 0) PyErr_Format(PyExc_ValueError, "%s must be in 0..%ld, got %R", name, max, o);
        else if (lo > 0 && hi > 0) PyErr_SetString(clv_struct_error, "required argument is not an integer");
        ok = -1;
    }
    Py_XDECREF(zero);
    Py_XDECREF(top);
    return ok;
}

/* Clamp into [0, max] like writer._u32/_u64 (then struct.pack needs an int). */
static int clamped(PyObject *o, uint64_t max, uint64_t *out) {
    if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (overflow < 0 || (!overflow && v < 0)) *out = 0;
        else if (!overflow && (uint64_t)v <= max) *out = (uint64_t)v;
        else if (max < UINT64_MAX) *out = max;
        else {
            unsigned long long u = PyLong_AsUnsignedLongLong(o);
            if (u == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); u = UINT64_MAX; }
            *out = u;
        }
        return 0;
    }
    PyObject *zero = PyLong_FromLong(0), *top = PyLong_FromUnsignedLongLong(max);
    int rc = -1;
    if (zero && top) {
        int neg = PyObject_RichCompareBool(o, zero, Py_LT);
        int big = neg == 0 ? PyObject_RichCompareBool(o, top, Py_GT) : 0;
        if (neg > 0) { *out = 0; rc = 0; }
        else if (big > 0) { *out = max; rc = 0; }
        else if (neg == 0 && big == 0) PyErr_SetString(clv_struct_error, "required argument is not an integer");
    }
    Py_XDECREF(zero);
    Py_XDECREF(top);
    return rc;
}

static PyObject *TraceRing_record(TraceRing *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"kind", "opcode", "agent_id", "t_ns", "peer_id", "aux", "service_ns",
                                        "queue_ns", "world_id", "result", "req", "resp"};
    PyObject *a[12];
    if (clv_parse_args("record", args, nargs, kwnames, names, 12, 4, a) < 0) return NULL;
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "trace writer is closed");
        return NULL;
    }
    clv_trace_rec rec = {0};
    if (small_field(a[0], "kind", NUM_KINDS - 1, &rec.kind) < 0 ||
        small_field(a[1], "opcode", 255, &rec.opcode) < 0 ||
        (a[9] && small_field(a[9], "result", 255, &rec.result) < 0))
        return NULL;
    Py_buffer req = {0}, resp = {0};
    PyObject *out = NULL;
    if (a[10] && PyObject_GetBuffer(a[10], &req, PyBUF_SIMPLE) < 0) { req.obj = NULL; goto done; }
    if (a[11] && PyObject_GetBuffer(a[11], &resp, PyBUF_SIMPLE) < 0) { resp.obj = NULL; goto done; }
    PyObject *const u32s[] = {a[2], a[4], a[6], a[7], a[8]};
    int64_t *const dst[] = {&rec.agent_id, &rec.peer_id, &rec.service_ns, &rec.queue_ns, &rec.world_id};
    uint64_t t_ns, v;
    if (clamped(a[3], UINT64_MAX, &t_ns) < 0) goto done;
    for (int i = 0; i < 5; i++) {
        if (u32s[i] == NULL) continue;
        if (clamped(u32s[i], U32_MAX, &v) < 0) goto done;
        *dst[i] = (int64_t)v;
    }
    if (a[5] && clamped(a[5], UINT64_MAX, &rec.aux) < 0) goto done;
    rec.req = req.obj ? req.buf : "";
    rec.req_len = req.obj ? (size_t)req.len : 0;
    rec.resp = resp.obj ? resp.buf : "";
    rec.resp_len = resp.obj ? (size_t)resp.len : 0;
    if (ring_append(self, &rec, t_ns) < 0) goto done;
    out = Py_NewRef(Py_None);
done:
    if (req.obj) PyBuffer_Release(&req);
    if (resp.obj) PyBuffer_Release(&resp);
    return out;
}

static PyObject *TraceRing_flush(TraceRing *self, PyObject *unused) {
    if (ring_flush(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static int ring_close(TraceRing *self) {
    if (self->closed) return 0;
    int rc = ring_flush(self);
    self->closed = 1;
    if (self->owns_fd && close(self->fd) < 0 && rc == 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        rc = -1;
    }
    return rc;
}

static PyObject *TraceRing_close(TraceRing *self, PyObject *unused) {
    if (ring_close(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *TraceRing_enter(TraceRing *self, PyObject *unused) { return Py_NewRef(self); }

static PyObject *TraceRing_exit(TraceRing *self, PyObject *const *args, Py_ssize_t nargs) {
    if (ring_close(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A header i64 (struct 'q'): an int in range, else struct.error. */
static int header_i64(PyObject *o, int64_t *out) {
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
    if (overflow) {
        PyErr_SetString(clv_struct_error, "argument out of range");
        return -1;
    }
    *out = x;
    return 0;
}

static int TraceRing_init(TraceRing *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path_or_fd", "buffer_size", "cap", "wall_ns", "mono_ns", NULL};
    PyObject *target, *buffer_size = NULL, *cap = NULL, *wall = Py_None, *mono = Py_None;
    if (self->buf != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "TraceRing is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOOO:TraceRing", kwlist, &target, &buffer_size, &cap, &wall,
                                     &mono))
        return -1;
    Py_ssize_t bsize = 65536;
    long lcap = 256;
    if (buffer_size != NULL) {
        bsize = PyNumber_AsSsize_t(buffer_size, PyExc_OverflowError);
        if (bsize == -1 && PyErr_Occurred()) return -1;
    }
    if (bsize <= 0) {
        PyErr_Format(PyExc_ValueError, "buffer_size must be > 0, got %zd", bsize);
        return -1;
    }
    if (cap != NULL) {
        lcap = PyLong_AsLong(cap);
        if (lcap == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
            PyErr_Clear();
            lcap = -1;
        }
    }
    if (lcap < 0 || lcap > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "cap must be in 0..65535, got %R", cap);
        return -1;
    }
    int64_t wall_ns = 0, mono_ns = 0;
    self->buf = PyMem_Malloc((size_t)bsize);
    if (self->buf == NULL) { PyErr_NoMemory(); return -1; }
    self->buffer_size = bsize;
    self->cap = (uint32_t)lcap;
    if (PyLong_Check(target)) {
        long lfd = PyLong_AsLong(target);
        if (lfd == -1 && PyErr_Occurred()) return -1;
        if (lfd < INT_MIN || lfd > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "fd is greater than maximum");
            return -1;
        }
        int fd = (int)lfd;
        self->fd = fd;
        self->owns_fd = 0;
        self->path = Py_NewRef(Py_None);
    } else {
        PyObject *path = PyOS_FSPath(target);
        if (path == NULL) return -1;
        PyObject *encoded = NULL;
        if (!PyUnicode_FSConverter(path, &encoded)) { Py_DECREF(path); return -1; }
        int fd;
        Py_BEGIN_ALLOW_THREADS
        fd = open(PyBytes_AS_STRING(encoded), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        Py_END_ALLOW_THREADS
        Py_DECREF(encoded);
        if (fd < 0) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
            Py_DECREF(path);
            return -1;
        }
        self->fd = fd;
        self->owns_fd = 1;
        self->path = path;
    }
    if (wall == Py_None) wall_ns = clock_ns(CLOCK_REALTIME);
    else if (header_i64(wall, &wall_ns) < 0) goto fail;
    if (mono == Py_None) mono_ns = clock_ns(CLOCK_MONOTONIC);
    else if (header_i64(mono, &mono_ns) < 0) goto fail;
    unsigned char h[FILE_HEADER_SIZE];
    memcpy(h, "CLVTRACE", 8);
    h[8] = 1; h[9] = 0;
    h[10] = FILE_HEADER_SIZE; h[11] = 0;
    clv_put_le32(h + 12, 0);
    clv_put_le64(h + 16, (uint64_t)wall_ns);
    clv_put_le64(h + 24, (uint64_t)mono_ns);
    if (write_all(self, (const char *)h, sizeof h) < 0) goto fail;
    return 0;
fail:
    /* the twin leaks its fd here; closing ours is strictly better and invisible to the file's bytes */
    if (self->owns_fd) close(self->fd);
    self->closed = 1;
    return -1;
}

static void TraceRing_dealloc(TraceRing *self) {
    if (self->buf != NULL && !self->closed) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (ring_close(self) < 0) PyErr_WriteUnraisable((PyObject *)self);
        PyErr_Restore(et, ev, tb);
    }
    PyMem_Free(self->buf);
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *TraceRing_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    TraceRing *self = (TraceRing *)type->tp_alloc(type, 0);
    if (self != NULL) { self->fd = -1; self->closed = 1; }
    return (PyObject *)self;
}

static int TraceRing_init_wrapper(PyObject *self, PyObject *args, PyObject *kwds) {
    TraceRing *r = (TraceRing *)self;
    r->closed = 0;
    if (TraceRing_init(r, args, kwds) < 0) {
        r->closed = 1;
        return -1;
    }
    return 0;
}

static PyObject *get_path(TraceRing *self, void *c) { return Py_NewRef(self->path ? self->path : Py_None); }
static PyObject *get_closed(TraceRing *self, void *c) { return PyBool_FromLong(self->closed); }

static PyMethodDef TraceRing_methods[] = {
    {"record", (PyCFunction)(void (*)(void))TraceRing_record, METH_FASTCALL | METH_KEYWORDS,
     "record(kind, opcode, agent_id, t_ns, peer_id=0, aux=0, service_ns=0, queue_ns=0, world_id=0, result=0, "
     "req=b'', resp=b''): append one record."},
    {"flush", (PyCFunction)TraceRing_flush, METH_NOARGS, "Write the buffered records to the file (one write)."},
    {"close", (PyCFunction)TraceRing_close, METH_NOARGS, "Flush, then close the file if this ring opened it."},
    {"__enter__", (PyCFunction)TraceRing_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))TraceRing_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef TraceRing_members[] = {
    {"records", T_ULONGLONG, offsetof(TraceRing, records), READONLY, "records appended"},
    {"bytes_written", T_ULONGLONG, offsetof(TraceRing, bytes_written), READONLY, "bytes written to the file"},
    {"buffer_size", T_PYSSIZET, offsetof(TraceRing, buffer_size), READONLY, "buffer size in bytes"},
    {"cap", T_UINT, offsetof(TraceRing, cap), READONLY, "payload bytes stored per side"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef TraceRing_getset[] = {
    {"path", (getter)get_path, NULL, "the file path, or None when writing to a caller's fd", NULL},
    {"closed", (getter)get_closed, NULL, "whether close() ran", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject clv_TraceRingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clove_gym.native._native.TraceRing",
    .tp_basicsize = sizeof(TraceRing),
    .tp_dealloc = (destructor)TraceRing_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TraceRing(path_or_fd, buffer_size=65536, cap=256, wall_ns=None, mono_ns=None): buffered "
              ".clvtrace writer (twin: clove_gym.runtime.trace.writer.TraceWriter).",
    .tp_methods = TraceRing_methods,
    .tp_members = TraceRing_members,
    .tp_getset = TraceRing_getset,
    .tp_init = TraceRing_init_wrapper,
    .tp_new = TraceRing_new,
};

void clv_tracering_init(void) { crc_init(); }
