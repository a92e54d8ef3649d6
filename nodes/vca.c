/* vca: a control-only node. Its `level` is added (in dB) to the `vca`
 * parameter of every member fader listed in its `members` option; the
 * session does the bookkeeping, so the node itself has no audio ports. */
#include "mg_node.h"

static const mg_param_spec params[] = {
    {"level", "dB", "offset added to every member's gain", -120.0f, 24.0f, 0.0f, MG_MAP_LIN,
     MG_TAPER_FADER, 0.0f},
};

static void process(void *st, const mg_proc *p)
{
    (void)st;
    (void)p;
}

const mg_node_type mg_type_vca = {
    .name = "vca",
    .doc = "VCA group: `level` (dB) is added to the gain of every member fader named in the "
           "`members` option (comma-separated gain node names); several VCAs add up.",
    .default_channels = 1,
    .min_channels = 1,
    .max_channels = 1,
    MG_PARAMS(params),
    .state_size = 1,
    .process = process,
};
