"""EBU Tech 3341 true-peak test tones shared by the meter and limiter tests.

(frequency as a fraction of fs, phase in degrees, true-peak level in dBTP).
Cases 15-19 as in Tech 3341 (from the document's description, which could not
be checked here); 20-23 are further tones of the same structure at 0 dBTP (the
true peak of a sampled sine is its continuous amplitude)."""

SR = 48000

TP_CASES = {
    15: (1 / 4, 0.0, -6.0),
    16: (1 / 4, 45.0, -6.0),
    17: (1 / 6, 60.0, -6.0),
    18: (1 / 8, 67.5, -6.0),
    19: (1 / 4, 45.0, 3.0),
    20: (1 / 4, 45.0, 0.0),
    21: (1 / 6, 60.0, 0.0),
    22: (1 / 8, 67.5, 0.0),
    23: (997 / SR, 30.0, 0.0),
}
