// A shared library of the crash zoo.
#pragma once

// Crashes by writing through p (pass NULL) two calls deep inside the library.
void zoolib_crash(volatile int* p);
