/* mixgraph LV2 hosting: what csrc/lv2host.c (control thread: the lilv world,
 * plugin descriptions, per-plugin node types) shares with nodes/lv2.c (the
 * node: instantiate in prepare, run() in process). Internal, not Python's. */
#ifndef MG_LV2_H
#define MG_LV2_H

#include <stdint.h>

#include "mg_api.h"

#define MG_LV2_ATOM_CAPACITY 8192 /* bytes of each atom port's buffer */

/* How each LV2 port of a plugin is connected. */
enum {
    MG_LV2_AUDIO_IN, MG_LV2_AUDIO_OUT, /* the node's ports, in the node's order */
    MG_LV2_CONTROL_IN,                 /* a parameter (index = parameter number) */
    MG_LV2_CONTROL_OUT,                /* a readout (index = readout number) */
    MG_LV2_ATOM_IN, MG_LV2_ATOM_OUT,   /* an empty sequence / a buffer to fill */
    MG_LV2_CV_IN, MG_LV2_CV_OUT,       /* silence / a scratch buffer */
    MG_LV2_NULL                        /* connectionOptional, of a kind not hosted */
};

typedef struct {
    int kind;   /* MG_LV2_* */
    int index;  /* node port channel, parameter or readout number */
} mg_lv2_port;

/* One plugin, described once (csrc/lv2host.c); the type's `data`. */
typedef struct {
    const void *plugin;        /* const LilvPlugin * */
    mg_lv2_info info;
    uint32_t n_ports;          /* LV2 ports */
    mg_lv2_port *ports;        /* n_ports */
    int n_params, n_readouts;
    int *param_port;           /* n_params: LV2 port index of each parameter */
    int *readout_port;         /* n_readouts */
    int latency_port;          /* LV2 index of the latency output, or -1 */
    int n_atom;                /* atom ports (each gets a buffer) */
    int worker;                /* the plugin uses worker:schedule */
    int n_main_in;             /* audio inputs that are not side chains (first) */
} mg_lv2_plugin;

/* A missing plugin's placeholder (csrc/lv2host.c): the type's `data`. */
typedef struct {
    int n_in, n_out;
} mg_lv2_hole;

#ifdef MG_HAVE_LILV
#include <lv2/core/lv2.h>
#include <lv2/options/options.h>

#include <lv2/log/log.h>

#define MG_LV2_MAX_FEATURES 12
#define MG_LV2_NAME_MAX 64
#define MG_LV2_DIR_MAX 1024
/* The host features one instance gets (options carry its rate and block sizes;
 * log lines carry its node's name). */
typedef struct {
    float rate;
    int32_t min_block, max_block, nominal_block;
    LV2_Options_Option opts[5];
    LV2_Feature f_opts;
    LV2_Log_Log log;
    LV2_Feature f_log;
    char name[MG_LV2_NAME_MAX]; /* the node's name (mg_lv2_next_node) */
    char dir[MG_LV2_DIR_MAX];   /* its state directory ("" if none was given) */
    const LV2_Feature *list[MG_LV2_MAX_FEATURES + 1];
} mg_lv2_features;
/* [control] Fill f for an instance running at rate, named and placed by the
 * last mg_lv2_next_node. */
void mg_lv2_features_init(mg_lv2_features *f, double rate);
#endif
/* [control] A URI's number (urid:map), for the node's own use. */
uint32_t mg_lv2_urid(const char *uri);
/* [control] Record why a node's prepare failed (mg_lv2_last_error). */
void mg_lv2_set_error(const char *what, const char *detail);

#endif
