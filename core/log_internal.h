/* Shorthands for the library's own diagnostics (see kin/diag.h). */
#ifndef KIN_CORE_LOG_INTERNAL_H
#define KIN_CORE_LOG_INTERNAL_H

#include <kin/diag.h>

#define KIN_DEBUG(...)                                                         \
    kin_diag_emit(KIN_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define KIN_INFO(...)                                                          \
    kin_diag_emit(KIN_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define KIN_WARN(...)                                                          \
    kin_diag_emit(KIN_LOG_WARNING, __FILE__, __LINE__, __VA_ARGS__)
#define KIN_ERROR(...)                                                         \
    kin_diag_emit(KIN_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
