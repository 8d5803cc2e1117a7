/* version: the one definition of vlq's version string. */
#ifndef VLQ_VERSION_H
#define VLQ_VERSION_H

#define VLQ_VERSION "0.1.0"

#endif
