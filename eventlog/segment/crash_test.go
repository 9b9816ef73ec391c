package segment

const crashChildEnv = "OUTRIGGER_SEGMENT_CRASH_CHILD"
