// Shared helpers for every vkharp shader. Include after `#version 450` with
//   #extension GL_GOOGLE_include_directive : require
//   #include "common.glsl"
// Conventions: constant_id 0 is WG, the work-group size (layout(local_size_x_id = 0) in;).
// Large 1-D grids spill into y: the flat group index is gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x.

uint flat_group_id() {
    return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
}
