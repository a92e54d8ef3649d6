/* The real FFT of dsp_fft.h (the denoise node's), exposed for the test suite
 * (tests/test_fft.py compares it with numpy.fft.rfft / irfft). [control] */
#include "dsp_fft.h"
#include "mg_api.h"

int mg_fft_check(int n, const float *x, float *re, float *im, float *back)
{
    mg_fft f;
    if (mg_fft_init(&f, n) != 0)
        return -1;
    mg_fft_forward(&f, x, re, im);
    mg_fft_inverse(&f, re, im, back);
    mg_fft_free(&f);
    return 0;
}

int mg_fft_check_win(int n, const float *x, const float *w, float *re, float *im, float *ola)
{
    mg_fft f;
    if (mg_fft_init(&f, n) != 0)
        return -1;
    float *scratch = malloc((size_t)n * sizeof(float));
    if (!scratch) {
        mg_fft_free(&f);
        return -1;
    }
    mg_fft_forward_win(&f, x, w, re, im);
    mg_fft_inverse_ola(&f, re, im, scratch, w, ola);
    free(scratch);
    mg_fft_free(&f);
    return 0;
}
