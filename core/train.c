/* train.c: placeholder until its first implementation lands. */
