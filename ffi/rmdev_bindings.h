/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C API rmdev binds that the kernel's own `bindings` crate lacks: the
 * VFIO device core and the mdev bus, and anonymous inodes for migration
 * data files. Bindgen turns this into
 * ffi/bindings_generated.rs at build time, with the kernel's own flags.
 */
#include <linux/vfio.h>
#include <linux/mdev.h>
#include <linux/eventfd.h>
#include <linux/uuid.h>
#include <linux/anon_inodes.h>
