# kernels/gpu/GpuSources.cmake: how GPU sources are compiled, for both backends.
#   gptoss_gpu_sources(<target> [HOST] <src>...): <src> (any extension) are compiled by the GPU compiler:
#     CUDA: CMake's CUDA language (nvcc), CMAKE_CUDA_ARCHITECTURES (default 90a; 90 and 80 also
#           build). With 90a in the list the targets get GPTOSS_WGMMA (public): the device code has
#           Hopper's wgmma (kernels/gpu/wgmma.h) and the host may choose it.
#     HIP:  Debian's hipcc (ROCm 5.2) via a custom rule `hipcc -x hip --offload-arch=${GPTOSS_HIP_ARCH}`
#           producing an object file linked into <target>; the rest of the project stays on the
#           host C++ compiler (hipcc would compile every .cpp as HIP). CMake 3.25's HIP language
#           does not find Debian's layout, hence the custom rule.
#     HOST: the sources define no kernels (tests, engine, programs: they call launchers and the
#           runtime API only). With HIP they are compiled by the host C++ compiler against
#           hip_runtime.h (-D__HIP_PLATFORM_AMD__): Debian's clang 15 crashes compiling GoogleTest
#           in HIP mode with -std=c++20, and host-only code needs no device pass anyway.
#   gptoss_gpu_fix_dir_options(): the top-level add_compile_options(-Wall ...) are host-compiler
#     flags; nvcc rejects them, so in GPU directories they are passed to CXX as is and to CUDA
#     through -Xcompiler.
include_guard(GLOBAL)

macro(gptoss_gpu_fix_dir_options)
  get_property(_gpu_opts DIRECTORY PROPERTY COMPILE_OPTIONS)
  set(_gpu_new "")
  foreach(_o IN LISTS _gpu_opts)
    if(_o MATCHES "^\\$<")
      list(APPEND _gpu_new "${_o}")
    else()
      list(APPEND _gpu_new "$<$<COMPILE_LANGUAGE:CXX>:${_o}>" "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${_o}>")
    endif()
  endforeach()
  set_property(DIRECTORY PROPERTY COMPILE_OPTIONS "${_gpu_new}")
endmacro()

function(gptoss_gpu_sources tgt)
  set(_host_only OFF)
  if(ARGN AND ARGV1 STREQUAL "HOST")
    set(_host_only ON)
    list(REMOVE_AT ARGN 0)
  endif()
  if(GPU_BACKEND STREQUAL "HIP" AND _host_only)
    foreach(src IN LISTS ARGN)
      get_filename_component(_abs "${src}" ABSOLUTE)
      set_source_files_properties(${_abs} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-x;c++")
      target_sources(${tgt} PRIVATE ${_abs})
    endforeach()
    target_compile_definitions(${tgt} PRIVATE __HIP_PLATFORM_AMD__ GPTOSS_HIP)
    target_link_libraries(${tgt} PUBLIC ${GPTOSS_AMDHIP64})
    return()
  endif()
  if(GPU_BACKEND STREQUAL "CUDA")
    foreach(src IN LISTS ARGN)
      get_filename_component(_abs "${src}" ABSOLUTE)
      set_source_files_properties(${_abs} PROPERTIES LANGUAGE CUDA)
      target_sources(${tgt} PRIVATE ${_abs})
    endforeach()
    target_compile_options(${tgt} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>)
    if("90a" IN_LIST CMAKE_CUDA_ARCHITECTURES)
      target_compile_definitions(${tgt} PUBLIC GPTOSS_WGMMA)
    endif()
    target_link_libraries(${tgt} PUBLIC CUDA::cudart)
  elseif(GPU_BACKEND STREQUAL "HIP")
    set(_inc "$<TARGET_PROPERTY:${tgt},INCLUDE_DIRECTORIES>")
    set(_def "$<TARGET_PROPERTY:${tgt},COMPILE_DEFINITIONS>")
    set(_opt -O3)
    if(CMAKE_BUILD_TYPE STREQUAL "Debug")
      set(_opt -O0 -g)
    endif()
    foreach(src IN LISTS ARGN)
      get_filename_component(_abs "${src}" ABSOLUTE)
      get_filename_component(_name "${src}" NAME)
      set(_obj "${CMAKE_CURRENT_BINARY_DIR}/hip/${tgt}/${_name}.o")
      add_custom_command(
        OUTPUT ${_obj}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/hip/${tgt}
        COMMAND ${GPTOSS_HIPCC} -x hip --offload-arch=${GPTOSS_HIP_ARCH} -std=c++20 ${_opt} -fPIC
                -DGPTOSS_HIP "$<$<BOOL:${_def}>:-D$<JOIN:${_def},;-D>>"
                "$<$<BOOL:${_inc}>:-I$<JOIN:${_inc},;-I>>"
                -Wall -Wno-unused-parameter -MD -MF ${_obj}.d -c ${_abs} -o ${_obj}
        DEPENDS ${_abs}
        DEPFILE ${_obj}.d
        COMMAND_EXPAND_LISTS
        COMMENT "hipcc ${_name} (${GPTOSS_HIP_ARCH})"
        VERBATIM)
      set_source_files_properties(${_obj} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
      target_sources(${tgt} PRIVATE ${_obj})
    endforeach()
    target_link_libraries(${tgt} PUBLIC ${GPTOSS_AMDHIP64})
    target_compile_definitions(${tgt} PUBLIC GPTOSS_HIP)
  endif()
endfunction()
