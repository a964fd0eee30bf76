/* dtype.c: placeholder until its first implementation lands. */
