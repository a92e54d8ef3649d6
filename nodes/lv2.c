/* lv2: an LV2 plugin hosted through lilv.
 *
 * The registered type is a template: a node is made from the type that
 * csrc/lv2host.c builds for one plugin (its ports, parameters and readouts
 * from the plugin's description; `data` is the mg_lv2_plugin). prepare
 * (control thread) instantiates the plugin at the engine's rate and
 * activates it; process (audio thread) connects the node's buffers and the
 * control values and calls run() for the sub-block, so a parameter event
 * inside a block splits run() at its frame; release deactivates and frees.
 * Nothing here allocates or locks on the audio thread (a plugin's own run()
 * is its own business). */
#include "mg_node.h"
#include "mg_lv2.h"
#include "mg_internal.h" /* the node's state, for the state save/restore calls */

#ifdef MG_HAVE_LILV
#include <errno.h>
#include <lilv/lilv.h>
#include <lv2/state/state.h>
#include <sys/stat.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#include <lv2/atom/atom.h>
#include <lv2/worker/worker.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

/* the control thread's floating-point mode (MXCSR on x86, FPCR on arm64) */
static unsigned long fp_mode_get(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return _mm_getcsr();
#elif defined(__aarch64__)
    unsigned long v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
#else
    return 0;
#endif
}

static void fp_mode_set(unsigned long v)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr((unsigned int)v);
#elif defined(__aarch64__)
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
#else
    (void)v;
#endif
}

/* ---- worker:schedule: a single-producer single-consumer byte ring per
 * direction; messages are [uint32 size][bytes]. The audio thread writes
 * requests and reads responses without locks; the worker thread sleeps on
 * a semaphore (sem_post does not block). */
#define RING_BYTES 65536u
#define MSG_MAX 4096u
typedef struct {
    _Atomic uint32_t head, tail; /* free-running byte counts: written, read */
    uint8_t buf[RING_BYTES];
} msg_ring;

static void ring_copy_in(msg_ring *r, uint32_t at, const void *src, uint32_t n)
{
    const uint32_t off = at % RING_BYTES, first = n < RING_BYTES - off ? n : RING_BYTES - off;
    memcpy(r->buf + off, src, first);
    memcpy(r->buf, (const uint8_t *)src + first, n - first);
}

static void ring_copy_out(const msg_ring *r, uint32_t at, void *dst, uint32_t n)
{
    const uint32_t off = at % RING_BYTES, first = n < RING_BYTES - off ? n : RING_BYTES - off;
    memcpy(dst, r->buf + off, first);
    memcpy((uint8_t *)dst + first, r->buf, n - first);
}

static int ring_put(msg_ring *r, const void *data, uint32_t n)
{
    const uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    const uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (n > MSG_MAX || RING_BYTES - (head - tail) < n + 4u)
        return 0;
    ring_copy_in(r, head, &n, 4);
    ring_copy_in(r, head + 4, data, n);
    atomic_store_explicit(&r->head, head + 4 + n, memory_order_release);
    return 1;
}

/* the next message into dst (room for MSG_MAX); its size, or -1 when empty */
static int ring_get(msg_ring *r, void *dst)
{
    const uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    const uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (head == tail)
        return -1;
    uint32_t n;
    ring_copy_out(r, tail, &n, 4);
    ring_copy_out(r, tail + 4, dst, n);
    atomic_store_explicit(&r->tail, tail + 4 + n, memory_order_release);
    return (int)n;
}

typedef struct {
    const mg_lv2_plugin *pl;
    LilvInstance *inst;
    const LV2_Descriptor *desc;
    LV2_Handle handle;
    float *controls;          /* one float per LV2 port (control ports use theirs) */
    float *zero, *scratch;    /* MG_MAX_BLOCK each: silent CV in, discarded CV out */
    uint8_t *atoms;           /* n_atom buffers of MG_LV2_ATOM_CAPACITY */
    uint32_t urid_chunk, urid_sequence;
    int latency, latency_known;
    uint64_t nonfinite;       /* output samples scrubbed */
    /* worker:schedule (when the plugin asks for it) */
    const LV2_Worker_Interface *wiface;
    LV2_Worker_Schedule sched;
    LV2_Feature f_sched;
    msg_ring *req, *resp;
    uint8_t *msg_audio, *msg_worker; /* MSG_MAX each */
    sem_t sem;
    pthread_t thread;
    int thread_on;
    _Atomic int quit;
    _Atomic int work_pending; /* requests scheduled and not yet worked */
    int active;
    LV2_State_Make_Path make_path;
    LV2_Feature f_make_path;
    mg_lv2_features feats;
} lv2_state;

/* An atom input holds an empty sequence; an output offers its whole capacity. */
static void reset_atoms(lv2_state *s)
{
    const mg_lv2_plugin *pl = s->pl;
    for (uint32_t i = 0; i < pl->n_ports; i++) {
        const mg_lv2_port *lp = &pl->ports[i];
        if (lp->kind != MG_LV2_ATOM_IN && lp->kind != MG_LV2_ATOM_OUT)
            continue;
        LV2_Atom_Sequence *seq = (LV2_Atom_Sequence *)(s->atoms + (size_t)lp->index *
                                                       MG_LV2_ATOM_CAPACITY);
        if (lp->kind == MG_LV2_ATOM_IN) {
            seq->atom.size = sizeof(LV2_Atom_Sequence_Body);
            seq->atom.type = s->urid_sequence;
        } else {
            seq->atom.size = MG_LV2_ATOM_CAPACITY - sizeof(LV2_Atom);
            seq->atom.type = s->urid_chunk;
        }
        seq->body.unit = 0;
        seq->body.pad = 0;
    }
}

static void release(void *st)
{
    lv2_state *s = st;
    if (s->thread_on) {
        atomic_store(&s->quit, 1);
        sem_post(&s->sem);
        pthread_join(s->thread, NULL);
        sem_destroy(&s->sem);
    }
    free(s->req);
    free(s->resp);
    free(s->msg_audio);
    free(s->msg_worker);
    if (s->inst) {
        if (s->active)
            lilv_instance_deactivate(s->inst);
        lilv_instance_free(s->inst);
    }
    free(s->controls);
    free(s->zero);
    free(s->scratch);
    free(s->atoms);
    memset(s, 0, sizeof *s);
}

/* Connect every port that is not the node's audio or a parameter. */
static void connect_fixed(lv2_state *s)
{
    const mg_lv2_plugin *pl = s->pl;
    for (uint32_t i = 0; i < pl->n_ports; i++) {
        const mg_lv2_port *lp = &pl->ports[i];
        void *buf = NULL;
        switch (lp->kind) {
        case MG_LV2_AUDIO_IN: buf = s->zero; break;
        case MG_LV2_AUDIO_OUT: buf = s->scratch; break;
        case MG_LV2_CONTROL_IN:
        case MG_LV2_CONTROL_OUT: buf = &s->controls[i]; break;
        case MG_LV2_ATOM_IN:
        case MG_LV2_ATOM_OUT: buf = s->atoms + (size_t)lp->index * MG_LV2_ATOM_CAPACITY; break;
        case MG_LV2_CV_IN: buf = s->zero; break;
        case MG_LV2_CV_OUT: buf = s->scratch; break;
        default: buf = NULL;
        }
        s->desc->connect_port(s->handle, i, buf);
    }
}

/* [audio, or control during the latency run] the plugin asks for work */
static LV2_Worker_Status schedule_work(LV2_Worker_Schedule_Handle h, uint32_t size,
                                       const void *data)
{
    lv2_state *s = h;
    if (!ring_put(s->req, data, size))
        return LV2_WORKER_ERR_NO_SPACE;
    atomic_fetch_add(&s->work_pending, 1);
    sem_post(&s->sem);
    return LV2_WORKER_SUCCESS;
}

/* [worker] the plugin's work() answers: delivered before the next run() */
static LV2_Worker_Status respond(LV2_Worker_Respond_Handle h, uint32_t size, const void *data)
{
    lv2_state *s = h;
    return ring_put(s->resp, data, size) ? LV2_WORKER_SUCCESS : LV2_WORKER_ERR_NO_SPACE;
}

static void *worker_main(void *arg)
{
    lv2_state *s = arg;
    for (;;) {
        while (sem_wait(&s->sem) != 0) {
        }
        if (atomic_load(&s->quit))
            return NULL;
        int n;
        while ((n = ring_get(s->req, s->msg_worker)) >= 0) {
            if (s->wiface && s->wiface->work)
                s->wiface->work(s->handle, respond, s, (uint32_t)n, s->msg_worker);
            atomic_fetch_sub(&s->work_pending, 1);
        }
    }
}

/* [audio] hand the plugin the worker's responses (before run) */
static void deliver_responses(lv2_state *s)
{
    int n;
    while ((n = ring_get(s->resp, s->msg_audio)) >= 0)
        if (s->wiface->work_response)
            s->wiface->work_response(s->handle, (uint32_t)n, s->msg_audio);
}

/* ---- files: state:makePath, state:mapPath, state:freePath [control/worker]
 * A plugin's files live in its node's state directory (server/lv2.py:
 * <state dir>/lv2/<node>); a path the plugin names is taken relative to it
 * with every `..`, `.` and empty component dropped, so it cannot leave it. */

/* dir + "/" + rel, sanitised; NULL when too long or out of memory */
static char *inside(const char *dir, const char *rel)
{
    const size_t cap = strlen(dir) + strlen(rel) + 2;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t len = (size_t)snprintf(out, cap, "%s", dir);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = 0;
    const char *p = rel;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && !(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.')) {
            out[len++] = '/';
            memcpy(out + len, p, n);
            len += n;
            out[len] = 0;
        }
        p += n;
    }
    return out;
}

/* mkdir -p of path's parent directories (path itself is a file) */
static void make_parents(const char *path)
{
    char buf[MG_LV2_DIR_MAX * 2];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *q = buf + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return;
            *q = '/';
        }
}

static const char *node_dir(const lv2_state *s)
{
    return s->feats.dir[0] ? s->feats.dir : "/tmp/mixgraph-lv2";
}

static char *make_path(LV2_State_Make_Path_Handle h, const char *path)
{
    lv2_state *s = h;
    char *out = inside(node_dir(s), path ? path : "");
    if (out)
        make_parents(out);
    return out;
}

/* an absolute path inside the node's directory becomes relative to it (so a
 * saved patch keeps working when the state directory moves); others stay */
static char *abstract_path(LV2_State_Map_Path_Handle h, const char *abs)
{
    const lv2_state *s = h;
    const char *dir = node_dir(s);
    const size_t n = strlen(dir);
    if (abs && !strncmp(abs, dir, n) && abs[n] == '/')
        return strdup(abs + n + 1);
    return strdup(abs ? abs : "");
}

static char *absolute_path(LV2_State_Map_Path_Handle h, const char *path)
{
    const lv2_state *s = h;
    if (path && path[0] == '/')
        return strdup(path);
    return inside(node_dir(s), path ? path : "");
}

static void free_path(LV2_State_Free_Path_Handle h, char *path)
{
    (void)h;
    free(path);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    lv2_state *s = st;
    const mg_lv2_plugin *pl = ctx->type_data;
    mg_lv2_set_error("", NULL);
    if (!pl) {
        mg_lv2_set_error("an lv2 node needs a plugin: `uri <plugin-URI>`", NULL);
        return -1;
    }
    s->pl = pl;
    s->controls = mg_zalloc(pl->n_ports + 1, sizeof(float));
    s->zero = mg_zalloc(MG_MAX_BLOCK, sizeof(float));
    s->scratch = mg_zalloc(MG_MAX_BLOCK, sizeof(float));
    s->atoms = mg_zalloc((size_t)pl->n_atom + 1, MG_LV2_ATOM_CAPACITY);
    if (!s->controls || !s->zero || !s->scratch || !s->atoms) {
        mg_lv2_set_error("out of memory", NULL);
        release(s);
        return -1;
    }
    s->urid_chunk = mg_lv2_urid(LV2_ATOM__Chunk);
    s->urid_sequence = mg_lv2_urid(LV2_ATOM__Sequence);
    mg_lv2_features_init(&s->feats, ctx->sample_rate);
    {
        int k = 0;
        while (s->feats.list[k])
            k++;
        s->make_path = (LV2_State_Make_Path){s, make_path};
        s->f_make_path = (LV2_Feature){LV2_STATE__makePath, &s->make_path};
        s->feats.list[k] = &s->f_make_path;
        s->feats.list[k + 1] = NULL;
    }
    if (pl->worker) {
        s->req = mg_zalloc(1, sizeof(msg_ring));
        s->resp = mg_zalloc(1, sizeof(msg_ring));
        s->msg_audio = mg_zalloc(MSG_MAX, 1);
        s->msg_worker = mg_zalloc(MSG_MAX, 1);
        if (!s->req || !s->resp || !s->msg_audio || !s->msg_worker ||
            sem_init(&s->sem, 0, 0) != 0) {
            mg_lv2_set_error("out of memory", NULL);
            release(s);
            return -1;
        }
        s->sched = (LV2_Worker_Schedule){s, schedule_work};
        s->f_sched = (LV2_Feature){LV2_WORKER__schedule, &s->sched};
        int k = 0;
        while (s->feats.list[k])
            k++;
        s->feats.list[k] = &s->f_sched;
        s->feats.list[k + 1] = NULL;
        if (pthread_create(&s->thread, NULL, worker_main, s) != 0) {
            sem_destroy(&s->sem);
            mg_lv2_set_error("cannot start the plugin's worker thread", NULL);
            release(s);
            return -1;
        }
        s->thread_on = 1;
    }
    /* a plugin library built with -ffast-math sets FTZ/DAZ when it is loaded
     * (crtfastmath's constructor) in the thread that loads it: this one, the
     * control thread, whose numbers must stay IEEE (the audio thread sets its
     * own mode per block). Keep the floating-point mode as it was. */
    const unsigned long fpmode = fp_mode_get();
    s->inst = lilv_plugin_instantiate(pl->plugin, ctx->sample_rate, s->feats.list);
    fp_mode_set(fpmode);
    if (!s->inst) {
        mg_lv2_set_error("the plugin failed to instantiate: ", pl->info.uri);
        release(s);
        return -1;
    }
    s->desc = lilv_instance_get_descriptor(s->inst);
    s->handle = lilv_instance_get_handle(s->inst);
    if (pl->worker)
        s->wiface = lilv_instance_get_extension_data(s->inst, LV2_WORKER__interface);
    /* controls start at their defaults (the engine's values arrive in process) */
    connect_fixed(s);
    reset_atoms(s);
    lilv_instance_activate(s->inst);
    s->active = 1;
    return 0;
}

static void process(void *st, const mg_proc *p)
{
    lv2_state *s = st;
    const mg_lv2_plugin *pl = s->pl;
    LV2_Handle h = s->handle;
    void (*connect)(LV2_Handle, uint32_t, void *) = s->desc->connect_port;
    for (uint32_t i = 0; i < pl->n_ports; i++) {
        const mg_lv2_port *lp = &pl->ports[i];
        if (lp->kind == MG_LV2_AUDIO_IN)
            connect(h, i, (void *)p->in[lp->index]);
        else if (lp->kind == MG_LV2_AUDIO_OUT)
            connect(h, i, p->out[lp->index]);
    }
    for (int k = 0; k < pl->n_params; k++)
        s->controls[pl->param_port[k]] = mg_pv_at(&p->pv[k], 0);
    if (pl->n_atom)
        reset_atoms(s);
    if (s->wiface)
        deliver_responses(s);
    s->desc->run(h, (uint32_t)p->nframes);
    if (s->wiface && s->wiface->end_run)
        s->wiface->end_run(h);
    for (int k = 0; k < pl->n_readouts; k++)
        p->readout[k] = s->controls[pl->readout_port[k]];
    /* a plugin's NaN or Inf stops here (counted in the `nonfinite` readout), so
     * it never reaches a downstream node's state */
    uint32_t bad = 0;
    for (int k = 0; k < pl->info.n_audio_out; k++) {
        float *y = p->out[k];
        for (int i = 0; i < p->nframes; i++) {
            const int ok = isfinite(y[i]);
            bad += (uint32_t)!ok;
            y[i] = ok ? y[i] : 0.0f;
        }
    }
    if (bad) {
        s->nonfinite += bad;
        p->readout[pl->n_readouts] = (float)s->nonfinite;
    }
}

/* [control, and audio through the engine's setter] a parameter's value
 * reaches the plugin's control port (process sets them again each call) */
static void on_param(void *st, int index, float target)
{
    lv2_state *s = st;
    if (s->pl && index >= 0 && index < s->pl->n_params)
        s->controls[s->pl->param_port[index]] = target;
}

/* [control] The plugin's latency output is valid only after a run, and may
 * depend on its parameters: the first call (mixgraph asks once, when the node
 * is made with its creation values and is in no plan yet) runs silent
 * blocks until it reads the same twice, and starts the plugin afresh (deactivate + activate resets it).
 * Later calls give that value: a parameter that changes the plugin's latency
 * afterwards is not followed (docs/nodes.md). */
static int latency(const void *cst)
{
    lv2_state *s = (lv2_state *)cst; /* the first call measures: see above */
    if (!s->inst || s->pl->latency_port < 0)
        return 0;
    if (!s->latency_known) {
        connect_fixed(s);
        reset_atoms(s);
        /* some plugins (x42 nodelay) announce at the start of run() what the
         * previous run left: run until two announcements agree (at most 64) */
        float lat = NAN;
        for (int k = 0; k < 64; k++) {
            lilv_instance_run(s->inst, 64);
            const float v = s->controls[s->pl->latency_port];
            if (k > 0 && v == lat)
                break;
            lat = v;
        }
        s->latency = isfinite(lat) && lat > 0.0f && lat < 1e7f ? (int)lrintf(lat) : 0;
        lilv_instance_deactivate(s->inst);
        lilv_instance_activate(s->inst);
        reset_atoms(s);
        s->latency_known = 1;
    }
    return s->latency;
}

/* ---- state: the plugin's LV2_State_Interface, records in a flat buffer
 * ([key][type][flags][size] u32 each, then the bytes padded to 8) that
 * server/lv2.py turns into the patch document and back. Control thread only:
 * save may run while the audio thread runs the plugin (the state extension
 * allows it); restore only into a node in no plan yet (server/lv2.py). */
typedef struct {
    uint8_t *buf;
    size_t cap, len;
    int over;
} save_sink;

static LV2_State_Status store(LV2_State_Handle h, uint32_t key, const void *value, size_t size,
                              uint32_t type, uint32_t flags)
{
    save_sink *k = h;
    const size_t need = 16 + ((size + 7) & ~(size_t)7);
    if (!key || !type || size > 0x7fffffffu || k->len + need > k->cap) {
        k->over = 1;
        return LV2_STATE_ERR_UNKNOWN;
    }
    const uint32_t hdr[4] = {key, type, flags, (uint32_t)size};
    memcpy(k->buf + k->len, hdr, sizeof hdr);
    if (size)
        memcpy(k->buf + k->len + 16, value, size);
    memset(k->buf + k->len + 16 + size, 0, need - 16 - size);
    k->len += need;
    return LV2_STATE_SUCCESS;
}

typedef struct {
    const uint8_t *buf;
    size_t len;
} restore_src;

static const void *retrieve(LV2_State_Handle h, uint32_t key, size_t *size, uint32_t *type,
                            uint32_t *flags)
{
    const restore_src *r = h;
    for (size_t at = 0; at + 16 <= r->len;) {
        uint32_t hdr[4];
        memcpy(hdr, r->buf + at, sizeof hdr);
        if (hdr[0] == key) {
            *size = hdr[3];
            *type = hdr[1];
            *flags = hdr[2];
            return r->buf + at + 16;
        }
        at += 16 + (((size_t)hdr[3] + 7) & ~(size_t)7);
    }
    return NULL;
}

/* the instance's features and the state ones (map/make/free path), into out */
static void state_features(lv2_state *s, const LV2_Feature **out, LV2_State_Map_Path *mp,
                           LV2_State_Free_Path *fp, LV2_Feature *f_mp, LV2_Feature *f_fp)
{
    *mp = (LV2_State_Map_Path){s, abstract_path, absolute_path};
    *fp = (LV2_State_Free_Path){NULL, free_path};
    *f_mp = (LV2_Feature){LV2_STATE__mapPath, mp};
    *f_fp = (LV2_Feature){LV2_STATE__freePath, fp};
    int k = 0;
    for (; s->feats.list[k] && k < MG_LV2_MAX_FEATURES; k++)
        out[k] = s->feats.list[k];
    out[k++] = f_mp;
    out[k++] = f_fp;
    out[k] = NULL;
}

static const LV2_State_Interface *state_iface(mg_node *n, lv2_state **sp)
{
    if (!n || n->type->prepare != prepare)
        return NULL;
    lv2_state *s = n->state;
    if (!s->inst)
        return NULL;
    *sp = s;
    return lilv_instance_get_extension_data(s->inst, LV2_STATE__interface);
}

int mg_lv2_state_save(mg_node *n, uint8_t *buf, int cap)
{
    lv2_state *s = NULL;
    const LV2_State_Interface *si = state_iface(n, &s);
    mg_lv2_set_error("", NULL);
    if (!si || !si->save)
        return -1;
    const LV2_Feature *feats[MG_LV2_MAX_FEATURES + 3];
    LV2_State_Map_Path mp;
    LV2_State_Free_Path fp;
    LV2_Feature f_mp, f_fp;
    state_features(s, feats, &mp, &fp, &f_mp, &f_fp);
    save_sink k = {buf, cap > 0 ? (size_t)cap : 0, 0, 0};
    const unsigned long fpmode = fp_mode_get();
    const LV2_State_Status st = si->save(s->handle, store, &k, 0, feats);
    fp_mode_set(fpmode);
    if (k.over) {
        mg_lv2_set_error("the plugin's state is larger than a patch keeps", NULL);
        return -2;
    }
    if (st != LV2_STATE_SUCCESS) {
        mg_lv2_set_error("the plugin failed to save its state", NULL);
        return -2;
    }
    return (int)k.len;
}

int mg_lv2_state_restore(mg_node *n, const uint8_t *buf, int len, int timeout_ms)
{
    lv2_state *s = NULL;
    const LV2_State_Interface *si = state_iface(n, &s);
    mg_lv2_set_error("", NULL);
    if (!si || !si->restore)
        return -1;
    /* every record inside the buffer before the plugin reads any */
    size_t at = 0;
    while (len > 0 && at + 16 <= (size_t)len) {
        uint32_t hdr[4];
        memcpy(hdr, buf + at, sizeof hdr);
        at += 16 + (((size_t)hdr[3] + 7) & ~(size_t)7);
    }
    if (len < 0 || at != (size_t)len) {
        mg_lv2_set_error("malformed state records", NULL);
        return -2;
    }
    const LV2_Feature *feats[MG_LV2_MAX_FEATURES + 3];
    LV2_State_Map_Path mp;
    LV2_State_Free_Path fp;
    LV2_Feature f_mp, f_fp;
    state_features(s, feats, &mp, &fp, &f_mp, &f_fp);
    restore_src r = {buf, (size_t)len};
    const unsigned long fpmode = fp_mode_get();
    const LV2_State_Status st = si->restore(s->handle, retrieve, &r, 0, feats);
    fp_mode_set(fpmode);
    if (st != LV2_STATE_SUCCESS) {
        mg_lv2_set_error("the plugin refused the saved state", NULL);
        return (int)st;
    }
    /* what the plugin scheduled while restoring (loading a file, say) is worked
     * now, so its first run() gets the response (an offline render is exact) */
    for (int waited = 0; atomic_load(&s->work_pending) > 0; waited++) {
        if (waited >= timeout_ms) {
            mg_lv2_set_error("the plugin's worker did not finish restoring in time", NULL);
            return -3;
        }
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return 0;
}

#else /* no lilv: the type exists so patches name it, but no node can be made */

typedef struct {
    int unused;
} lv2_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    mg_lv2_set_error("this build of mixgraph has no LV2 support "
                     "(liblilv-dev was missing when it was built)", NULL);
    return -1;
}

static void process(void *st, const mg_proc *p) {}
static void release(void *st) {}
static int latency(const void *st) { return 0; }
static void on_param(void *st, int index, float target) {}

int mg_lv2_state_save(mg_node *n, uint8_t *buf, int cap) { return -1; }
int mg_lv2_state_restore(mg_node *n, const uint8_t *buf, int len, int timeout_ms)
{
    return -1;
}

#endif

const mg_node_type mg_type_lv2 = {
    .name = "lv2",
    .doc = "An LV2 plugin hosted through lilv: `uri <plugin-URI>`; its ports, parameters "
           "and readouts are the plugin's own (`mixgraph lv2 show <uri>`).",
    .default_channels = 1, .min_channels = 1, .max_channels = 1,
    .state_size = sizeof(lv2_state),
    .prepare = prepare,
    .process = process,
    .release = release,
    .latency = latency,
    .on_param = on_param,
};
