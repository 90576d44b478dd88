/* DataPlane: IPC names, mailboxes and the state store, answering the hot syscalls without Python.
 * Twin and specification: runtime/dataplane.py (DataPlane); every method returns what the twin's
 * returns, byte for byte. Values are kept as canonical JSON text (jsoncanon.c), strings as their
 * canonical text without quotes, which identifies a Python str uniquely, so keys compare as bytes.
 * Containers are CPython dicts/sets driven through the C API (no bytecode runs): they give the twin's
 * insertion-order and equality semantics for free. */
#include "native.h"

#include <string.h>
#include <time.h>

#define OP_NOOP 0x00
#define OP_SEND 0x20
#define OP_RECV 0x21
#define OP_BROADCAST 0x22
#define OP_REGISTER 0x23
#define OP_STORE 0x30
#define OP_FETCH 0x31
#define OP_DELETE 0x32
#define OP_KEYS 0x33
#define RECV_MAX_LIMIT 10000
#define K_SYSCALL 0
#define K_ENQ 2
#define K_DEQ 3
#define U32_MAX 0xFFFFFFFFu
#define ENTRY_HDR 17 /* store entry bytes: owner i64, expiry i64, scope u8, then the value text */

static const int FAST_OPS[] = {OP_NOOP, OP_SEND, OP_RECV, OP_BROADCAST, OP_STORE, OP_FETCH};
static const char *const SCOPES[] = {"global", "agent", "session"};
enum { SCOPE_GLOBAL, SCOPE_AGENT, SCOPE_SESSION };

static int is_plane_op(long op) {
    switch (op) {
    case OP_NOOP: case OP_SEND: case OP_RECV: case OP_BROADCAST: case OP_REGISTER: case OP_STORE:
    case OP_FETCH: case OP_DELETE: case OP_KEYS: return 1;
    default: return 0;
    }
}

/* ---- per-agent state: counters and the mailbox (a ring of messages) --------------------------- */
typedef struct {
    int64_t sender, t_ns;
    uint64_t seq;
    PyObject *name; /* bytes: sender's name text, or NULL for "" */
    PyObject *text; /* bytes: the message's canonical JSON */
} message;

typedef struct {
    int64_t stats[3]; /* syscalls, messages_sent, messages_recv */
    message *ring;
    size_t head, count, cap;
} agent_state;

static void state_free(PyObject *capsule) {
    agent_state *st = PyCapsule_GetPointer(capsule, NULL);
    for (size_t i = 0; i < st->count; i++) {
        message *m = &st->ring[(st->head + i) % st->cap];
        Py_XDECREF(m->name);
        Py_DECREF(m->text);
    }
    PyMem_Free(st->ring);
    PyMem_Free(st);
}

static int box_push(agent_state *st, const message *m) {
    if (st->count == st->cap) {
        size_t ncap = st->cap ? st->cap * 2 : 8;
        message *r = PyMem_Malloc(ncap * sizeof *r);
        if (r == NULL) { PyErr_NoMemory(); return -1; }
        for (size_t i = 0; i < st->count; i++) r[i] = st->ring[(st->head + i) % st->cap];
        PyMem_Free(st->ring);
        st->ring = r;
        st->head = 0;
        st->cap = ncap;
    }
    st->ring[(st->head + st->count) % st->cap] = *m;
    st->count++;
    return 0;
}

static message box_pop(agent_state *st) {
    message m = st->ring[st->head];
    st->head = (st->head + 1) % st->cap;
    st->count--;
    return m;
}

/* ---- the type ---------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    int64_t mailbox_limit, store_limit;
    PyObject *agents;      /* set: valid SEND targets */
    PyObject *names;       /* dict: name text (bytes) -> owner id (int) */
    PyObject *sender_name; /* dict: id (int) -> most recent name text (bytes), in first-registration order */
    PyObject *states;      /* dict: id (int) -> capsule(agent_state) */
    PyObject *store;       /* dict: internal key text (bytes) -> entry (bytes) */
    PyObject *trace;       /* NULL, a TraceRing, or any object with .record() */
    uint64_t msg_seq;
    unsigned char fast[256];
    clv_jreq scratch; /* request scratch space, reused unless a trace sink re-enters */
    int scratch_busy;
} DataPlane;

static PyObject *kw_syscall, *kw_msg, *str_record; /* kwnames of the twin's trace calls */

static int64_t now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static agent_state *state_get(DataPlane *self, int64_t id, PyObject **capsule_out) {
    PyObject *key = PyLong_FromLongLong(id);
    if (key == NULL) return NULL;
    PyObject *cap = PyDict_GetItemWithError(self->states, key);
    if (cap == NULL) {
        if (PyErr_Occurred()) { Py_DECREF(key); return NULL; }
        agent_state *st = PyMem_Calloc(1, sizeof *st);
        if (st == NULL) { Py_DECREF(key); PyErr_NoMemory(); return NULL; }
        cap = PyCapsule_New(st, NULL, state_free);
        if (cap == NULL) { PyMem_Free(st); Py_DECREF(key); return NULL; }
        int rc = PyDict_SetItem(self->states, key, cap);
        Py_DECREF(cap);
        if (rc < 0) { Py_DECREF(key); return NULL; }
    }
    Py_DECREF(key);
    if (capsule_out) *capsule_out = Py_NewRef(cap);
    return PyCapsule_GetPointer(cap, NULL);
}

/* ---- tracing ----------------------------------------------------------------------------------- */
static int trace_emit(DataPlane *self, const clv_trace_rec *r) {
    if (self->trace == NULL) return 0;
    if (Py_IS_TYPE(self->trace, &clv_TraceRingType)) return clv_tracering_append(self->trace, r);
    /* any other sink: call sink.record(...) with the twin's exact arguments */
    PyObject *sink = Py_NewRef(self->trace);
    PyObject *argv[10] = {sink};
    int n = 1, syscall = r->kind == K_SYSCALL;
    argv[n++] = PyLong_FromUnsignedLong(r->kind);
    argv[n++] = PyLong_FromUnsignedLong(r->opcode);
    argv[n++] = PyLong_FromLongLong(r->agent_id);
    argv[n++] = PyLong_FromLongLong(r->t_ns);
    if (syscall) {
        argv[n++] = PyLong_FromLongLong(r->service_ns);
        argv[n++] = PyLong_FromLongLong(r->queue_ns);
        argv[n++] = PyLong_FromUnsignedLong(r->result);
        argv[n++] = PyBytes_FromStringAndSize(r->req, (Py_ssize_t)r->req_len);
        argv[n++] = PyBytes_FromStringAndSize(r->resp, (Py_ssize_t)r->resp_len);
    } else {
        argv[n++] = PyLong_FromLongLong(r->peer_id);
        argv[n++] = PyLong_FromUnsignedLongLong(r->aux);
        argv[n++] = PyBytes_FromStringAndSize(r->req, (Py_ssize_t)r->req_len);
    }
    PyObject *res = NULL;
    int ok = 1;
    for (int i = 1; i < n; i++) ok &= argv[i] != NULL;
    if (ok) res = PyObject_VectorcallMethod(str_record, argv, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            syscall ? kw_syscall : kw_msg);
    for (int i = 0; i < n; i++) Py_XDECREF(argv[i]);
    if (res == NULL) return -1;
    Py_DECREF(res);
    return 0;
}

/* ---- responses --------------------------------------------------------------------------------- */
#define PUTS(s) do { if (clv_buf_puts(out, (s)) < 0) return -1; } while (0)
#define PUT(p, n) do { if (clv_buf_put(out, (p), (n)) < 0) return -1; } while (0)
#define PUTI(v) do { if (clv_buf_put_i64(out, (v)) < 0) return -1; } while (0)

static int error_resp(clv_buf *out, const char *text, const char *tail, size_t tail_len) {
    PUTS("{\"success\": false, \"error\": \"");
    PUTS(text);
    if (tail) PUT(tail, tail_len);
    PUTS("\"}");
    return 0;
}

static int error_int(clv_buf *out, const char *text, int64_t v) {
    PUTS("{\"success\": false, \"error\": \"");
    PUTS(text);
    PUTI(v);
    PUTS("\"}");
    return 0;
}

/* Field readers with the twin's rules (_int_field, _str_field): 0 ok, 1 wrong type. */
typedef struct { int big; int64_t v; } intval; /* big: the sign of an int beyond int64 */

static int int_field(const clv_jfield *f, int64_t def, intval *out) {
    out->big = 0;
    out->v = def;
    if (f->type == JT_ABSENT || f->type == JT_NULL) return 0;
    if (f->type == JT_INT) { out->v = f->i; return 0; }
    if (f->type == JT_BIGINT) { out->big = (int)f->i; return 0; }
    return 1;
}

static int str_field(const clv_jfield *f, const char **p, size_t *n, const clv_jreq *req) {
    *p = NULL;
    *n = 0;
    if (f->type == JT_ABSENT || f->type == JT_NULL) return 0;
    if (f->type != JT_STR) return 1;
    *p = req->text.data + f->off + 1; /* the text between the quotes */
    *n = f->len - 2;
    return 0;
}

static int type_error(clv_buf *out, const char *key, const char *what) {
    PUTS("{\"success\": false, \"error\": \"invalid request: '");
    PUTS(key);
    PUTS("' must be ");
    PUTS(what);
    PUTS("\"}");
    return 0;
}

/* ---- IPC --------------------------------------------------------------------------------------- */
/* 1 queued, 0 mailbox full, -1 error. */
static int enqueue(DataPlane *self, int64_t sender, int64_t target, PyObject *text, int64_t now, int opcode) {
    agent_state *st = state_get(self, target, NULL);
    if (st == NULL) return -1;
    if ((int64_t)st->count >= self->mailbox_limit) return 0;
    PyObject *sid = PyLong_FromLongLong(sender);
    if (sid == NULL) return -1;
    PyObject *name = PyDict_GetItemWithError(self->sender_name, sid);
    Py_DECREF(sid);
    if (name == NULL && PyErr_Occurred()) return -1;
    self->msg_seq++;
    message m = {sender, now, self->msg_seq, Py_XNewRef(name), Py_NewRef(text)};
    if (box_push(st, &m) < 0) { Py_XDECREF(m.name); Py_DECREF(m.text); return -1; }
    if (self->trace != NULL) {
        clv_trace_rec r = {.kind = K_ENQ, .opcode = (uint32_t)opcode, .agent_id = sender, .t_ns = now,
                           .peer_id = target, .aux = m.seq, .req = PyBytes_AS_STRING(text),
                           .req_len = (size_t)PyBytes_GET_SIZE(text), .resp = ""};
        if (trace_emit(self, &r) < 0) return -1;
    }
    return 1;
}

static PyObject *message_text(const clv_jreq *req) {
    const clv_jfield *f = &req->f[F_MESSAGE];
    if (f->type == JT_ABSENT) return PyBytes_FromStringAndSize("{}", 2);
    return PyBytes_FromStringAndSize(req->text.data + f->off, (Py_ssize_t)f->len);
}

static int op_send(DataPlane *self, int64_t aid, agent_state *st, const clv_jreq *req, int64_t now, clv_buf *out) {
    intval to;
    const char *name;
    size_t name_len;
    if (int_field(&req->f[F_TO], 0, &to)) return type_error(out, "to", "an integer");
    if (str_field(&req->f[F_TO_NAME], &name, &name_len, req)) return type_error(out, "to_name", "a string");
    if (to.big || to.v < 0 || to.v > (int64_t)U32_MAX)
        return error_resp(out, "invalid request: 'to' out of range", NULL, 0);
    int64_t target;
    if (to.v == 0) {
        if (name_len == 0) return error_resp(out, "target agent required (to or to_name)", NULL, 0);
        PyObject *key = PyBytes_FromStringAndSize(name, (Py_ssize_t)name_len);
        if (key == NULL) return -1;
        PyObject *owner = PyDict_GetItemWithError(self->names, key);
        Py_DECREF(key);
        if (owner == NULL) {
            if (PyErr_Occurred()) return -1;
            return error_resp(out, "target agent not found: ", name, name_len);
        }
        target = PyLong_AsLongLong(owner);
        if (target == -1 && PyErr_Occurred()) return -1;
    } else {
        target = to.v;
        PyObject *key = PyLong_FromLongLong(target);
        if (key == NULL) return -1;
        int known = PySet_Contains(self->agents, key);
        Py_DECREF(key);
        if (known < 0) return -1;
        if (!known) return error_int(out, "target agent not found: ", target);
    }
    PyObject *text = message_text(req);
    if (text == NULL) return -1;
    int q = enqueue(self, aid, target, text, now, OP_SEND);
    Py_DECREF(text);
    if (q < 0) return -1;
    if (q == 0) return error_int(out, "mailbox full: agent ", target);
    st->stats[1]++;
    PUTS("{\"success\": true, \"delivered_to\": ");
    PUTI(target);
    PUTS("}");
    return 0;
}

static int op_recv(DataPlane *self, int64_t aid, agent_state *st, const clv_jreq *req, int64_t now, clv_buf *out) {
    intval mx;
    if (int_field(&req->f[F_MAX], 10, &mx)) return type_error(out, "max", "an integer");
    int64_t limit = mx.big ? (mx.big > 0 ? RECV_MAX_LIMIT : -1) : (mx.v < RECV_MAX_LIMIT ? mx.v : RECV_MAX_LIMIT);
    int64_t count = 0;
    PUTS("{\"success\": true, \"count\": ");
    size_t count_at = out->len; /* the count is known only after the loop: write the list, then splice */
    PUTS(", \"messages\": [");
    while (st->count > 0 && count < limit) {
        message m = box_pop(st);
        if (count) PUTS(", ");
        int64_t age = now - m.t_ns;
        int rc = clv_buf_puts(out, "{\"from\": ") < 0 || clv_buf_put_i64(out, m.sender) < 0 ||
                 clv_buf_puts(out, ", \"from_name\": \"") < 0 ||
                 (m.name && clv_buf_put(out, PyBytes_AS_STRING(m.name), (size_t)PyBytes_GET_SIZE(m.name)) < 0) ||
                 clv_buf_puts(out, "\", \"message\": ") < 0 ||
                 clv_buf_put(out, PyBytes_AS_STRING(m.text), (size_t)PyBytes_GET_SIZE(m.text)) < 0 ||
                 clv_buf_puts(out, ", \"age_ms\": ") < 0 || clv_buf_put_i64(out, age > 0 ? age / 1000000 : 0) < 0 ||
                 clv_buf_puts(out, ", \"from_id\": ") < 0 || clv_buf_put_i64(out, m.sender) < 0 ||
                 clv_buf_putc(out, '}') < 0;
        count++;
        if (!rc && self->trace != NULL) {
            clv_trace_rec r = {.kind = K_DEQ, .opcode = OP_RECV, .agent_id = aid, .t_ns = now,
                               .peer_id = m.sender, .aux = m.seq, .req = PyBytes_AS_STRING(m.text),
                               .req_len = (size_t)PyBytes_GET_SIZE(m.text), .resp = ""};
            rc = trace_emit(self, &r) < 0;
        }
        Py_XDECREF(m.name);
        Py_DECREF(m.text);
        if (rc) return -1;
    }
    st->stats[2] += count;
    PUTS("]}");
    char num[24];
    int nl = snprintf(num, sizeof num, "%lld", (long long)count);
    if (clv_buf_reserve(out, (size_t)nl) < 0) return -1;
    memmove(out->data + count_at + nl, out->data + count_at, out->len - count_at);
    memcpy(out->data + count_at, num, (size_t)nl);
    out->len += (size_t)nl;
    return 0;
}

static int op_broadcast(DataPlane *self, int64_t aid, agent_state *st, const clv_jreq *req, int64_t now,
                        clv_buf *out) {
    const clv_jfield *inc = &req->f[F_INCLUDE_SELF];
    if (inc->type != JT_ABSENT && inc->type != JT_TRUE && inc->type != JT_FALSE)
        return error_resp(out, "invalid request: 'include_self' must be a boolean", NULL, 0);
    int include_self = inc->type == JT_TRUE;
    PyObject *text = message_text(req);
    if (text == NULL) return -1;
    PyObject *targets = PyDict_Keys(self->sender_name); /* a snapshot, like list(self._sender_name) */
    if (targets == NULL) { Py_DECREF(text); return -1; }
    int64_t delivered = 0;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(targets); i++) {
        int64_t target = PyLong_AsLongLong(PyList_GET_ITEM(targets, i));
        if (target == -1 && PyErr_Occurred()) { rc = -1; break; }
        if (target == aid && !include_self) continue;
        int q = enqueue(self, aid, target, text, now, OP_BROADCAST);
        if (q < 0) { rc = -1; break; }
        delivered += q;
    }
    Py_DECREF(targets);
    Py_DECREF(text);
    if (rc < 0) return -1;
    st->stats[1] += delivered;
    PUTS("{\"success\": true, \"delivered_count\": ");
    PUTI(delivered);
    PUTS("}");
    return 0;
}

static int op_register(DataPlane *self, int64_t aid, const clv_jreq *req, clv_buf *out) {
    const char *name;
    size_t n;
    if (str_field(&req->f[F_NAME], &name, &n, req)) return type_error(out, "name", "a string");
    if (n == 0) return error_resp(out, "name required", NULL, 0);
    PyObject *key = PyBytes_FromStringAndSize(name, (Py_ssize_t)n);
    PyObject *id = key ? PyLong_FromLongLong(aid) : NULL;
    int rc = -1;
    if (id != NULL) {
        PyObject *owner = PyDict_GetItemWithError(self->names, key);
        int other = 0;
        if (owner != NULL) {
            other = PyObject_RichCompareBool(owner, id, Py_NE);
        } else if (PyErr_Occurred()) other = -1;
        if (other > 0) rc = error_resp(out, "name already registered", NULL, 0);
        else if (other == 0 && PyDict_SetItem(self->names, key, id) == 0 &&
                 PyDict_SetItem(self->sender_name, id, key) == 0) {
            rc = clv_buf_puts(out, "{\"success\": true, \"agent_id\": ") < 0 || clv_buf_put_i64(out, aid) < 0 ||
                         clv_buf_puts(out, ", \"name\": \"") < 0 || clv_buf_put(out, name, n) < 0 ||
                         clv_buf_puts(out, "\"}") < 0
                     ? -1 : 0;
        }
    }
    Py_XDECREF(key);
    Py_XDECREF(id);
    return rc;
}

/* ---- state store ------------------------------------------------------------------------------- */
typedef struct { int64_t owner, expiry; int scope; const char *value; size_t value_len; } entry_view;

static void entry_read(PyObject *e, entry_view *v) {
    const char *p = PyBytes_AS_STRING(e);
    memcpy(&v->owner, p, 8);
    memcpy(&v->expiry, p + 8, 8);
    v->scope = p[16];
    v->value = p + ENTRY_HDR;
    v->value_len = (size_t)PyBytes_GET_SIZE(e) - ENTRY_HDR;
}

/* The internal key: the key text itself, or "agent:<id>:" + key text. */
static PyObject *internal_key(int64_t aid, const char *key, size_t n, int agent_scope) {
    if (!agent_scope) return PyBytes_FromStringAndSize(key, (Py_ssize_t)n);
    char pre[40];
    int pl = snprintf(pre, sizeof pre, "agent:%lld:", (long long)aid);
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(pl + n));
    if (b == NULL) return NULL;
    memcpy(PyBytes_AS_STRING(b), pre, (size_t)pl);
    memcpy(PyBytes_AS_STRING(b) + pl, key, n);
    return b;
}

/* _live(): the entry under key unless expired (an expired one is removed). Borrowed; NULL + no error
 * when absent. */
static PyObject *store_live(DataPlane *self, PyObject *key, int64_t now) {
    PyObject *e = PyDict_GetItemWithError(self->store, key);
    if (e == NULL) return NULL;
    entry_view v;
    entry_read(e, &v);
    if (v.expiry && v.expiry <= now) {
        if (PyDict_DelItem(self->store, key) < 0) return NULL;
        return NULL;
    }
    return e;
}

static int op_store(DataPlane *self, int64_t aid, const clv_jreq *req, int64_t now, clv_buf *out) {
    const char *key;
    size_t n;
    if (str_field(&req->f[F_KEY], &key, &n, req)) return type_error(out, "key", "a string");
    if (n == 0) return error_resp(out, "key is required", NULL, 0);
    int scope = SCOPE_GLOBAL;
    const clv_jfield *sf = &req->f[F_SCOPE];
    const char *sp;
    size_t sn;
    if (sf->type == JT_STR && str_field(sf, &sp, &sn, req) == 0) {
        for (int i = 0; i < 3; i++) {
            if (strlen(SCOPES[i]) == sn && memcmp(sp, SCOPES[i], sn) == 0) scope = i;
        }
    }
    const clv_jfield *ttl = &req->f[F_TTL];
    int64_t expiry = 0;
    if (ttl->type != JT_ABSENT && ttl->type != JT_NULL) {
        int64_t seconds;
        if (ttl->type == JT_INT) seconds = ttl->i > 1000000000 ? 1000000000 : ttl->i < -1000000000 ? -1000000000 : ttl->i;
        else if (ttl->type == JT_BIGINT) seconds = ttl->i > 0 ? 1000000000 : -1000000000;
        else if (ttl->type == JT_FLOAT && ttl->f == ttl->f) {
            double d = ttl->f > 1e9 ? 1e9 : ttl->f < -1e9 ? -1e9 : ttl->f;
            seconds = (int64_t)d; /* int() truncates toward zero, as the C cast does */
        } else return error_resp(out, "invalid request: 'ttl' must be a number", NULL, 0);
        if (seconds > 0) {
            int64_t span = seconds * 1000000000;
            expiry = now > INT64_MAX - span ? INT64_MAX : now + span;
        } else expiry = 1; /* <= 0: expired at once */
    }
    PyObject *ik = internal_key(aid, key, n, scope == SCOPE_AGENT);
    if (ik == NULL) return -1;
    int present = PyDict_Contains(self->store, ik);
    if (present < 0) { Py_DECREF(ik); return -1; }
    if (!present && PyDict_GET_SIZE(self->store) >= self->store_limit) {
        Py_DECREF(ik);
        return error_resp(out, "state store full", NULL, 0);
    }
    const clv_jfield *vf = &req->f[F_VALUE];
    const char *val = vf->type == JT_ABSENT ? "null" : req->text.data + vf->off;
    size_t vlen = vf->type == JT_ABSENT ? 4 : vf->len;
    PyObject *e = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(ENTRY_HDR + vlen));
    if (e == NULL) { Py_DECREF(ik); return -1; }
    char *p = PyBytes_AS_STRING(e);
    memcpy(p, &aid, 8);
    memcpy(p + 8, &expiry, 8);
    p[16] = (char)scope;
    memcpy(p + ENTRY_HDR, val, vlen);
    int rc = PyDict_SetItem(self->store, ik, e);
    Py_DECREF(ik);
    Py_DECREF(e);
    if (rc < 0) return -1;
    PUTS("{\"success\": true, \"key\": \"");
    PUT(key, n);
    PUTS("\"}");
    return 0;
}

static int op_fetch_delete(DataPlane *self, int64_t aid, const clv_jreq *req, int64_t now, int del, clv_buf *out) {
    const char *key;
    size_t n;
    if (str_field(&req->f[F_KEY], &key, &n, req)) return type_error(out, "key", "a string");
    if (n == 0) return error_resp(out, "key is required", NULL, 0);
    for (int agent_scope = 0; agent_scope < 2; agent_scope++) {
        PyObject *ik = internal_key(aid, key, n, agent_scope);
        if (ik == NULL) return -1;
        PyObject *e = del ? PyDict_GetItemWithError(self->store, ik) : store_live(self, ik, now);
        if (e == NULL && PyErr_Occurred()) { Py_DECREF(ik); return -1; }
        if (e != NULL) {
            entry_view v;
            entry_read(e, &v);
            if (del && (v.scope == SCOPE_GLOBAL || v.owner == aid)) {
                int rc = PyDict_DelItem(self->store, ik);
                Py_DECREF(ik);
                if (rc < 0) return -1;
                PUTS("{\"success\": true, \"deleted\": true}");
                return 0;
            }
            if (!del && (v.scope != SCOPE_AGENT || v.owner == aid)) {
                /* the entry stays referenced by the dict while we copy from it */
                int rc = clv_buf_puts(out, "{\"success\": true, \"exists\": true, \"value\": ") < 0 ||
                         clv_buf_put(out, v.value, v.value_len) < 0 || clv_buf_puts(out, ", \"scope\": \"") < 0 ||
                         clv_buf_puts(out, SCOPES[v.scope]) < 0 || clv_buf_puts(out, "\"}") < 0;
                Py_DECREF(ik);
                return rc ? -1 : 0;
            }
        }
        Py_DECREF(ik);
    }
    PUTS(del ? "{\"success\": true, \"deleted\": false}" : "{\"success\": true, \"exists\": false, \"value\": null}");
    return 0;
}

/* internal.startswith(prefix) on canonical texts. Texts compare like the strs they stand for, except
 * that an astral character is one str character but two \\u escapes: a prefix ending in a high
 * surrogate escape must not match the first half of a pair. */
static int text_startswith(const char *s, size_t sn, const char *p, size_t pn) {
    if (pn > sn || memcmp(s, p, pn) != 0) return 0;
    if (pn < 6 || sn < pn + 6) return 1;
    size_t last = 0;
    for (size_t i = 0; i < pn; i += p[i] == '\\' ? (p[i + 1] == 'u' ? 6 : 2) : 1) last = i;
    int high = pn - last == 6 && p[last + 1] == 'u' && p[last + 2] == 'd' && strchr("89ab", p[last + 3]) != NULL;
    int low_next = s[pn] == '\\' && s[pn + 1] == 'u' && s[pn + 2] == 'd' && strchr("cdef", s[pn + 3]) != NULL;
    return !(high && low_next);
}

static int op_keys(DataPlane *self, int64_t aid, const clv_jreq *req, int64_t now, clv_buf *out) {
    const char *prefix;
    size_t pn;
    if (str_field(&req->f[F_PREFIX], &prefix, &pn, req)) return type_error(out, "prefix", "a string");
    PyObject *keys = PyDict_Keys(self->store);
    if (keys == NULL) return -1;
    int64_t count = 0;
    int rc = clv_buf_puts(out, "{\"success\": true, \"keys\": [") < 0 ? -1 : 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys) && rc == 0; i++) {
        PyObject *ik = PyList_GET_ITEM(keys, i);
        PyObject *e = store_live(self, ik, now);
        if (e == NULL) { if (PyErr_Occurred()) rc = -1; continue; }
        entry_view v;
        entry_read(e, &v);
        if (v.scope == SCOPE_AGENT && v.owner != aid) continue;
        const char *s = PyBytes_AS_STRING(ik);
        size_t sn = (size_t)PyBytes_GET_SIZE(ik);
        if (!text_startswith(s, sn, prefix ? prefix : "", pn)) continue;
        if (sn >= 6 && memcmp(s, "agent:", 6) == 0) {
            const char *second = memchr(s + 6, ':', sn - 6);
            if (second != NULL) { sn -= (size_t)(second + 1 - s); s = second + 1; }
        }
        if ((count && clv_buf_put(out, ", ", 2) < 0) || clv_buf_putc(out, '"') < 0 || clv_buf_put(out, s, sn) < 0 ||
            clv_buf_putc(out, '"') < 0)
            rc = -1;
        count++;
    }
    Py_DECREF(keys);
    if (rc < 0) return -1;
    PUTS("], \"count\": ");
    PUTI(count);
    PUTS("}");
    return 0;
}

/* ---- one request ------------------------------------------------------------------------------- */
static int dp_request(DataPlane *self, int64_t aid, int opcode, const char *payload, size_t n, int64_t now_ns,
                      clv_buf *out) {
    PyObject *holder = NULL; /* keeps this agent's state alive if a trace sink removes the agent */
    agent_state *st = state_get(self, aid, &holder);
    if (st == NULL) return -1;
    st->stats[0]++;
    if (opcode == OP_NOOP) {
        int rc = clv_buf_put(out, payload, n);
        Py_DECREF(holder);
        return rc;
    }
    int64_t now = now_ns ? now_ns : now_mono();
    clv_jreq local = {{0}}, *req = &self->scratch;
    int own = self->scratch_busy;
    if (own) req = &local;
    else self->scratch_busy = 1;
    int rc = clv_json_request(payload, n, opcode == OP_KEYS, req);
    if (rc == CLV_REQ_MALFORMED) rc = error_resp(out, "invalid request: malformed JSON", NULL, 0);
    else if (rc == CLV_REQ_NOT_OBJECT) rc = error_resp(out, "invalid request: payload must be a JSON object", NULL, 0);
    else if (rc == CLV_REQ_OK) {
        switch (opcode) {
        case OP_SEND: rc = op_send(self, aid, st, req, now, out); break;
        case OP_RECV: rc = op_recv(self, aid, st, req, now, out); break;
        case OP_BROADCAST: rc = op_broadcast(self, aid, st, req, now, out); break;
        case OP_REGISTER: rc = op_register(self, aid, req, out); break;
        case OP_STORE: rc = op_store(self, aid, req, now, out); break;
        case OP_FETCH: rc = op_fetch_delete(self, aid, req, now, 0, out); break;
        case OP_DELETE: rc = op_fetch_delete(self, aid, req, now, 1, out); break;
        default: rc = op_keys(self, aid, req, now, out); break;
        }
    }
    if (own) clv_jreq_free(&local);
    else self->scratch_busy = 0;
    Py_DECREF(holder);
    return rc;
}

/* ---- Python methods ---------------------------------------------------------------------------- */
static int as_i64(PyObject *o, const char *what, int64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static PyObject *DataPlane_handle(DataPlane *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"agent_id", "opcode", "payload", "now_ns"};
    PyObject *a[4];
    if (clv_parse_args("handle", args, nargs, kwnames, names, 4, 3, a) < 0) return NULL;
    int overflow = 0;
    long op = PyLong_Check(a[1]) ? PyLong_AsLongAndOverflow(a[1], &overflow) : -1;
    if (!PyLong_Check(a[1]) || overflow || !is_plane_op(op)) {
        PyObject *spec = PyUnicode_FromString("02X");
        PyObject *hex = spec ? PyObject_Format(a[1], spec) : NULL;
        Py_XDECREF(spec);
        if (hex == NULL) return NULL;
        PyErr_Format(PyExc_ValueError, "opcode 0x%U is not a data-plane opcode", hex);
        Py_DECREF(hex);
        return NULL;
    }
    int64_t aid, now_ns = 0;
    if (as_i64(a[0], "agent_id", &aid) < 0 || (a[3] && as_i64(a[3], "now_ns", &now_ns) < 0)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[2], &view, PyBUF_SIMPLE) < 0) return NULL;
    clv_buf out = {0};
    PyObject *res = NULL;
    if (dp_request(self, aid, (int)op, view.buf, (size_t)view.len, now_ns, &out) == 0)
        res = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.len);
    PyBuffer_Release(&view);
    clv_buf_free(&out);
    return res;
}

static PyObject *DataPlane_process(DataPlane *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"agent_id", "buf", "pos", "now_ns", "recv_ns"};
    PyObject *a[5];
    if (clv_parse_args("process", args, nargs, kwnames, names, 5, 2, a) < 0) return NULL;
    int64_t aid, now_ns = 0, recv_ns = 0;
    if (!PyLong_Check(a[0])) {
        PyErr_SetString(clv_struct_error, "required argument is not an integer");
        return NULL;
    }
    if (as_i64(a[0], "agent_id", &aid) < 0) return NULL;
    if (aid < 0 || aid > (int64_t)U32_MAX) { /* the response headers carry it as a u32 */
        PyErr_SetString(clv_struct_error, "'I' format requires 0 <= number <= 4294967295");
        return NULL;
    }
    Py_ssize_t pos = 0;
    if (a[2]) {
        pos = PyNumber_AsSsize_t(a[2], PyExc_OverflowError);
        if (pos == -1 && PyErr_Occurred()) {
            if (clv_loop_would_run(a[1], a[2]) != 0) return NULL;
            return Py_BuildValue("(yOi)", "", a[2], CLV_SPLIT_OK);
        }
    }
    if ((a[3] && as_i64(a[3], "now_ns", &now_ns) < 0) || (a[4] && as_i64(a[4], "recv_ns", &recv_ns) < 0)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *base = view.buf;
    Py_ssize_t end = view.len;
    clv_buf out = {0};
    int status = CLV_SPLIT_OK, failed = 0;
    while (end - pos >= CLV_HEADER_SIZE) {
        Py_ssize_t off = clv_header_offset(pos, end);
        if (off < 0) { failed = 1; break; }
        const unsigned char *h = (const unsigned char *)base + off;
        if (clv_get_le32(h) != CLV_MAGIC) { status = CLV_SPLIT_BAD_MAGIC; break; }
        uint64_t size = clv_get_le64(h + 9);
        if (size > CLV_MAX_PAYLOAD) { status = CLV_SPLIT_OVERSIZE; break; }
        if (size > (uint64_t)(end - pos - CLV_HEADER_SIZE)) break;
        int opcode = h[8];
        if (!self->fast[opcode]) { status = CLV_PROCESS_SLOW; break; }
        Py_ssize_t stop = pos + CLV_HEADER_SIZE + (Py_ssize_t)size;
        PyObject *slice = NULL; /* only for the twin's negative-pos slicing */
        const char *payload = base + pos + CLV_HEADER_SIZE;
        size_t plen = (size_t)size;
        if (pos < 0) {
            slice = clv_slice_bytes(base, end, pos + CLV_HEADER_SIZE, stop);
            if (slice == NULL) { failed = 1; break; }
            payload = PyBytes_AS_STRING(slice);
            plen = (size_t)PyBytes_GET_SIZE(slice);
        }
        int64_t t0 = now_ns ? now_ns : now_mono();
        size_t start = out.len;
        if (clv_buf_reserve(&out, CLV_HEADER_SIZE) < 0) { Py_XDECREF(slice); failed = 1; break; }
        out.len += CLV_HEADER_SIZE;
        if (dp_request(self, aid, opcode, payload, plen, now_ns, &out) < 0) { Py_XDECREF(slice); failed = 1; break; }
        const char *resp = out.data + start + CLV_HEADER_SIZE;
        size_t rlen = out.len - start - CLV_HEADER_SIZE;
        if (self->trace != NULL) {
            int64_t t1 = now_ns ? now_ns : now_mono();
            int64_t service = t1 - t0 < (int64_t)U32_MAX ? t1 - t0 : (int64_t)U32_MAX;
            int64_t queue = 0;
            if (recv_ns) {
                queue = t0 - recv_ns;
                queue = queue < 0 ? 0 : queue > (int64_t)U32_MAX ? (int64_t)U32_MAX : queue;
            }
            static const char fail[] = "{\"success\": false";
            int err = opcode != OP_NOOP && rlen >= sizeof fail - 1 && memcmp(resp, fail, sizeof fail - 1) == 0;
            clv_trace_rec r = {.kind = K_SYSCALL, .opcode = (uint32_t)opcode, .agent_id = aid, .t_ns = t0,
                               .service_ns = service, .queue_ns = queue, .result = (uint32_t)err,
                               .req = payload, .req_len = plen, .resp = resp, .resp_len = rlen};
            if (trace_emit(self, &r) < 0) { Py_XDECREF(slice); failed = 1; break; }
        }
        Py_XDECREF(slice);
        unsigned char *oh = (unsigned char *)out.data + start;
        clv_put_le32(oh, CLV_MAGIC);
        clv_put_le32(oh + 4, (uint32_t)aid);
        oh[8] = (unsigned char)opcode;
        clv_put_le64(oh + 9, (uint64_t)rlen);
        pos = stop;
    }
    PyBuffer_Release(&view);
    PyObject *res = NULL;
    if (!failed) {
        PyObject *bytes = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.len);
        if (bytes != NULL) res = Py_BuildValue("(Nni)", bytes, pos, status);
    }
    clv_buf_free(&out);
    return res;
}

static PyObject *DataPlane_set_trace(DataPlane *self, PyObject *sink) {
    PyObject *old = self->trace;
    self->trace = sink == Py_None ? NULL : Py_NewRef(sink);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *DataPlane_set_fast_ops(DataPlane *self, PyObject *opcodes) {
    PyObject *it = PyObject_GetIter(opcodes);
    if (it == NULL) return NULL;
    PyObject *ops = PySet_New(NULL), *bad = PyList_New(0), *item;
    unsigned char fast[256] = {0};
    int failed = ops == NULL || bad == NULL;
    while (!failed && (item = PyIter_Next(it)) != NULL) {
        PyObject *v = PyNumber_Long(item); /* int(op) */
        Py_DECREF(item);
        if (v == NULL || PySet_Add(ops, v) < 0) { Py_XDECREF(v); failed = 1; break; }
        Py_DECREF(v);
    }
    Py_DECREF(it);
    if (!failed && PyErr_Occurred()) failed = 1;
    PyObject *seen = failed ? NULL : PyObject_GetIter(ops);
    if (seen == NULL) failed = 1;
    PyObject *v;
    while (!failed && (v = PyIter_Next(seen)) != NULL) {
        int overflow = 0, ok = 0;
        long op = PyLong_AsLongAndOverflow(v, &overflow);
        for (size_t k = 0; k < sizeof FAST_OPS / sizeof *FAST_OPS; k++) ok |= !overflow && op == FAST_OPS[k];
        if (ok) fast[op] = 1;
        else if (PyList_Append(bad, v) < 0) failed = 1;
        Py_DECREF(v);
    }
    if (!failed && PyErr_Occurred()) failed = 1;
    Py_XDECREF(seen);
    if (!failed && PyList_GET_SIZE(bad) > 0) {
        if (PyList_Sort(bad) == 0) PyErr_Format(PyExc_ValueError, "not fast-path opcodes: %R", bad);
        failed = 1;
    }
    Py_XDECREF(ops);
    Py_XDECREF(bad);
    if (failed) return NULL;
    memcpy(self->fast, fast, sizeof fast);
    Py_RETURN_NONE;
}

static PyObject *DataPlane_add_agent(DataPlane *self, PyObject *agent_id) {
    if (PySet_Add(self->agents, agent_id) < 0) return NULL;
    Py_RETURN_NONE;
}

static int pop_key(PyObject *dict, PyObject *key) {
    int has = PyDict_Contains(dict, key);
    if (has <= 0) return has;
    return PyDict_DelItem(dict, key);
}

static PyObject *DataPlane_remove_agent(DataPlane *self, PyObject *agent_id) {
    if (PySet_Discard(self->agents, agent_id) < 0) return NULL;
    PyObject *gone = PyList_New(0);
    if (gone == NULL) return NULL;
    Py_ssize_t i = 0;
    PyObject *name, *owner;
    while (PyDict_Next(self->names, &i, &name, &owner)) {
        int eq = PyObject_RichCompareBool(owner, agent_id, Py_EQ);
        if (eq < 0 || (eq && PyList_Append(gone, name) < 0)) { Py_DECREF(gone); return NULL; }
    }
    for (i = 0; i < PyList_GET_SIZE(gone); i++) {
        if (PyDict_DelItem(self->names, PyList_GET_ITEM(gone, i)) < 0) { Py_DECREF(gone); return NULL; }
    }
    Py_DECREF(gone);
    if (pop_key(self->sender_name, agent_id) < 0 || pop_key(self->states, agent_id) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *DataPlane_has_agent(DataPlane *self, PyObject *agent_id) {
    int r = PySet_Contains(self->agents, agent_id);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *DataPlane_names(DataPlane *self, PyObject *unused) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    Py_ssize_t i = 0;
    PyObject *text, *owner;
    while (PyDict_Next(self->names, &i, &text, &owner)) {
        PyObject *s = clv_json_text_to_str(PyBytes_AS_STRING(text), (size_t)PyBytes_GET_SIZE(text));
        if (s == NULL || PyDict_SetItem(d, s, owner) < 0) { Py_XDECREF(s); Py_DECREF(d); return NULL; }
        Py_DECREF(s);
    }
    return d;
}

static agent_state *state_peek(DataPlane *self, PyObject *agent_id, int *err) {
    PyObject *cap = PyDict_GetItemWithError(self->states, agent_id);
    *err = cap == NULL && PyErr_Occurred();
    return cap ? PyCapsule_GetPointer(cap, NULL) : NULL;
}

static PyObject *DataPlane_mailbox_len(DataPlane *self, PyObject *agent_id) {
    int err;
    agent_state *st = state_peek(self, agent_id, &err);
    if (err) return NULL;
    return PyLong_FromSize_t(st ? st->count : 0);
}

static PyObject *DataPlane_stats(DataPlane *self, PyObject *agent_id) {
    int err;
    agent_state *st = state_peek(self, agent_id, &err);
    if (err) return NULL;
    int64_t z[3] = {0, 0, 0};
    const int64_t *s = st ? st->stats : z;
    return Py_BuildValue("{sLsLsL}", "syscalls", (long long)s[0], "messages_sent", (long long)s[1], "messages_recv",
                         (long long)s[2]);
}

static PyObject *DataPlane_store_size(DataPlane *self, PyObject *unused) {
    return PyLong_FromSsize_t(PyDict_GET_SIZE(self->store));
}

/* ---- construction, attributes, GC -------------------------------------------------------------- */
static int limit_value(PyObject *o, int64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "limits must be ints, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = overflow > 0 ? INT64_MAX : overflow < 0 ? INT64_MIN : v;
    return 0;
}

static int DataPlane_init(DataPlane *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"mailbox_limit", "store_limit", NULL};
    PyObject *ml = NULL, *sl = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:DataPlane", kwlist, &ml, &sl)) return -1;
    int64_t m = 10000, s = 100000;
    if ((ml && limit_value(ml, &m) < 0) || (sl && limit_value(sl, &s) < 0)) return -1;
    if (m < 1 || s < 1) {
        PyErr_SetString(PyExc_ValueError, "mailbox_limit and store_limit must be >= 1");
        return -1;
    }
    if (self->agents != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "DataPlane is already initialised");
        return -1;
    }
    self->mailbox_limit = m;
    self->store_limit = s;
    self->agents = PySet_New(NULL);
    self->names = PyDict_New();
    self->sender_name = PyDict_New();
    self->states = PyDict_New();
    self->store = PyDict_New();
    if (!self->agents || !self->names || !self->sender_name || !self->states || !self->store) return -1;
    for (size_t k = 0; k < sizeof FAST_OPS / sizeof *FAST_OPS; k++) self->fast[FAST_OPS[k]] = 1;
    return 0;
}

static int DataPlane_traverse(DataPlane *self, visitproc visit, void *arg) {
    Py_VISIT(self->agents);
    Py_VISIT(self->names);
    Py_VISIT(self->sender_name);
    Py_VISIT(self->states);
    Py_VISIT(self->store);
    Py_VISIT(self->trace);
    return 0;
}

static int DataPlane_clear(DataPlane *self) {
    Py_CLEAR(self->agents);
    Py_CLEAR(self->names);
    Py_CLEAR(self->sender_name);
    Py_CLEAR(self->states);
    Py_CLEAR(self->store);
    Py_CLEAR(self->trace);
    return 0;
}

static void DataPlane_dealloc(DataPlane *self) {
    PyObject_GC_UnTrack(self);
    DataPlane_clear(self);
    clv_jreq_free(&self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *get_limit(DataPlane *self, void *which) {
    return PyLong_FromLongLong(which ? self->store_limit : self->mailbox_limit);
}

static int set_limit(DataPlane *self, PyObject *v, void *which) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a limit");
        return -1;
    }
    return limit_value(v, which ? &self->store_limit : &self->mailbox_limit);
}

static int ready(DataPlane *self) {
    if (self->agents == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "DataPlane.__init__ was not called");
        return 0;
    }
    return 1;
}

/* Wrappers so no method touches an uninitialised instance (DataPlane.__new__ without __init__). */
#define GUARD_O(fn) \
    static PyObject *fn##_g(DataPlane *self, PyObject *o) { return ready(self) ? fn(self, o) : NULL; }
#define GUARD_FAST(fn) \
    static PyObject *fn##_g(DataPlane *self, PyObject *const *a, Py_ssize_t n, PyObject *k) { \
        return ready(self) ? fn(self, a, n, k) : NULL; }
GUARD_O(DataPlane_set_trace)
GUARD_O(DataPlane_set_fast_ops)
GUARD_O(DataPlane_add_agent)
GUARD_O(DataPlane_remove_agent)
GUARD_O(DataPlane_has_agent)
GUARD_O(DataPlane_names)
GUARD_O(DataPlane_mailbox_len)
GUARD_O(DataPlane_stats)
GUARD_O(DataPlane_store_size)
GUARD_FAST(DataPlane_handle)
GUARD_FAST(DataPlane_process)

#define FASTKW(fn) (PyCFunction)(void (*)(void))fn##_g, METH_FASTCALL | METH_KEYWORDS
static PyMethodDef DataPlane_methods[] = {
    {"set_trace", (PyCFunction)DataPlane_set_trace_g, METH_O,
     "Where records of handled frames and message enqueue/dequeue go: a TraceRing (direct C calls), any "
     "object with .record(...), or None."},
    {"set_fast_ops", (PyCFunction)DataPlane_set_fast_ops_g, METH_O, "Which opcodes process() handles itself."},
    {"add_agent", (PyCFunction)DataPlane_add_agent_g, METH_O, "Make agent_id a valid SEND target."},
    {"remove_agent", (PyCFunction)DataPlane_remove_agent_g, METH_O, "Forget a connection: names, mailbox, counters."},
    {"has_agent", (PyCFunction)DataPlane_has_agent_g, METH_O, NULL},
    {"names", (PyCFunction)DataPlane_names_g, METH_NOARGS, "Registered name -> agent id."},
    {"mailbox_len", (PyCFunction)DataPlane_mailbox_len_g, METH_O, NULL},
    {"stats", (PyCFunction)DataPlane_stats_g, METH_O, "Counters of frames this plane answered for the agent."},
    {"store_size", (PyCFunction)DataPlane_store_size_g, METH_NOARGS, NULL},
    {"process", FASTKW(DataPlane_process),
     "process(agent_id, buf, pos=0, now_ns=0, recv_ns=0) -> (out, pos, status): answer the fast-path frames."},
    {"handle", FASTKW(DataPlane_handle), "handle(agent_id, opcode, payload, now_ns=0) -> response payload."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef DataPlane_getset[] = {
    {"mailbox_limit", (getter)get_limit, (setter)set_limit, "messages a mailbox holds at most", NULL},
    {"store_limit", (getter)get_limit, (setter)set_limit, "entries the store holds at most", (void *)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *DataPlane_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (kw_syscall == NULL) {
        kw_syscall = Py_BuildValue("(sssss)", "service_ns", "queue_ns", "result", "req", "resp");
        kw_msg = Py_BuildValue("(sss)", "peer_id", "aux", "req");
        str_record = PyUnicode_InternFromString("record");
        if (!kw_syscall || !kw_msg || !str_record) return NULL;
    }
    return type->tp_alloc(type, 0);
}

PyTypeObject clv_DataPlaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "clove_gym.native._native.DataPlane",
    .tp_basicsize = sizeof(DataPlane),
    .tp_dealloc = (destructor)DataPlane_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "DataPlane(mailbox_limit=10000, store_limit=100000): names, mailboxes and the state store "
              "(twin: clove_gym.runtime.dataplane.DataPlane).",
    .tp_traverse = (traverseproc)DataPlane_traverse,
    .tp_clear = (inquiry)DataPlane_clear,
    .tp_methods = DataPlane_methods,
    .tp_getset = DataPlane_getset,
    .tp_init = (initproc)DataPlane_init,
    .tp_new = DataPlane_new,
};
