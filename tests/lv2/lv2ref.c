/* A reference LV2 host for tests/test_lv2.py: lilv's lv2apply (lilv-utils
 * 0.24.14, utils/lv2apply.c) with one change, the number of frames per run().
 * lv2apply runs the plugin one frame at a time; this runs `block` frames per
 * call (the last call takes what is left), so a plugin whose result depends on
 * how the audio is split into run() calls (LSP's SIMD filters) can be compared
 * at the block size mixgraph runs it at. Like lv2apply: no host features,
 * control inputs at their defaults unless given, control outputs connected to
 * a value, other optional ports NULL, activate before and deactivate after.
 *
 * usage: lv2ref URI BLOCK IN.raw N_IN OUT.raw [SYMBOL VALUE]...
 * IN.raw and OUT.raw are interleaved native float32 (OUT has the plugin's
 * audio output count of channels); the rate is 48000. */
#include <lilv/lilv.h>
#include <lv2/core/lv2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *msg)
{
    fprintf(stderr, "lv2ref: %s\n", msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 6 || (argc - 6) % 2)
        return fail("usage: lv2ref URI BLOCK IN.raw N_IN OUT.raw [SYMBOL VALUE]...");
    const int block = atoi(argv[2]), n_in_file = atoi(argv[4]);
    if (block < 1 || n_in_file < 1)
        return fail("bad block or channel count");
    LilvWorld *world = lilv_world_new();
    lilv_world_load_all(world);
    LilvNode *uri = lilv_new_uri(world, argv[1]);
    const LilvPlugin *p = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri);
    if (!p)
        return fail("no such plugin");
    LilvNode *in_c = lilv_new_uri(world, LV2_CORE__InputPort);
    LilvNode *audio_c = lilv_new_uri(world, LV2_CORE__AudioPort);
    LilvNode *control_c = lilv_new_uri(world, LV2_CORE__ControlPort);
    const uint32_t n_ports = lilv_plugin_get_num_ports(p);
    float *values = calloc(n_ports, sizeof(float));
    lilv_plugin_get_port_ranges_float(p, NULL, NULL, values);
    for (uint32_t i = 0; i < n_ports; i++)
        values[i] = isnan(values[i]) ? 0.0f : values[i];
    for (int a = 6; a < argc; a += 2) {
        LilvNode *sym = lilv_new_string(world, argv[a]);
        const LilvPort *port = lilv_plugin_get_port_by_symbol(p, sym);
        lilv_node_free(sym);
        if (!port)
            return fail("unknown port symbol");
        values[lilv_port_get_index(p, port)] = strtof(argv[a + 1], NULL);
    }
    FILE *fi = fopen(argv[3], "rb");
    if (!fi)
        return fail("cannot open the input");
    fseek(fi, 0, SEEK_END);
    const long frames = ftell(fi) / (long)sizeof(float) / n_in_file;
    fseek(fi, 0, SEEK_SET);
    float *x = malloc((size_t)frames * (size_t)n_in_file * sizeof(float));
    if (fread(x, sizeof(float), (size_t)frames * (size_t)n_in_file, fi) !=
        (size_t)frames * (size_t)n_in_file)
        return fail("short read");
    fclose(fi);
    int n_in = 0, n_out = 0;
    for (uint32_t i = 0; i < n_ports; i++) {
        const LilvPort *port = lilv_plugin_get_port_by_index(p, i);
        if (lilv_port_is_a(p, port, audio_c))
            lilv_port_is_a(p, port, in_c) ? n_in++ : n_out++;
    }
    float *ins = calloc((size_t)(n_in ? n_in : 1) * (size_t)block, sizeof(float));
    float *outs = calloc((size_t)(n_out ? n_out : 1) * (size_t)block, sizeof(float));
    float *y = calloc((size_t)frames * (size_t)(n_out ? n_out : 1), sizeof(float));
    LilvInstance *inst = lilv_plugin_instantiate(p, 48000.0, NULL);
    if (!inst)
        return fail("instantiate failed");
    for (uint32_t i = 0, ki = 0, ko = 0; i < n_ports; i++) {
        const LilvPort *port = lilv_plugin_get_port_by_index(p, i);
        if (lilv_port_is_a(p, port, control_c))
            lilv_instance_connect_port(inst, i, &values[i]);
        else if (lilv_port_is_a(p, port, audio_c) && lilv_port_is_a(p, port, in_c))
            lilv_instance_connect_port(inst, i, ins + (size_t)block * ki++);
        else if (lilv_port_is_a(p, port, audio_c))
            lilv_instance_connect_port(inst, i, outs + (size_t)block * ko++);
        else
            lilv_instance_connect_port(inst, i, NULL);
    }
    lilv_instance_activate(inst);
    for (long at = 0; at < frames; at += block) {
        const int n = frames - at < block ? (int)(frames - at) : block;
        /* channels past the file's are taken round-robin, as lv2apply does */
        for (int c = 0; c < n_in; c++)
            for (int k = 0; k < n; k++)
                ins[(size_t)block * c + k] = x[(size_t)(at + k) * n_in_file + c % n_in_file];
        lilv_instance_run(inst, (uint32_t)n);
        for (int c = 0; c < n_out; c++)
            for (int k = 0; k < n; k++)
                y[(size_t)(at + k) * n_out + c] = outs[(size_t)block * c + k];
    }
    lilv_instance_deactivate(inst);
    lilv_instance_free(inst);
    FILE *fo = fopen(argv[5], "wb");
    if (!fo || fwrite(y, sizeof(float), (size_t)frames * (size_t)n_out, fo) !=
                   (size_t)frames * (size_t)n_out)
        return fail("cannot write the output");
    fclose(fo);
    return 0;
}
