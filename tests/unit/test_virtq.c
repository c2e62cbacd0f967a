#include "harness.h"
static void t(void){}
static const struct th_case cases[]={{"placeholder",t,0}};
TH_MAIN("test_virtq", cases)
