#!/bin/bash
# The two inline timings of this folder, as run on the H200 (repository root, PYTHONPATH=$PWD):
# batched_configs.log with CFGS below, batched_radix.log with CFGS_RADIX and the first two shapes.
# 'default' was the default of the call, spelled out (the defaults have since become runs32_1024x2)
CFGS="{'default':C(sample_run=1,block=2048,num_warps=4,count_backend='xla'),'runs32':C(sample_run=32,block=2048,num_warps=4),'runs32_1024x2':C(sample_run=32,block=1024,num_warps=2)}"
CFGS_RADIX="{'runs32_1024x2':C(sample_run=32,block=1024,num_warps=2),'runs32_1024x2_radix':C(sample_run=32,block=1024,num_warps=2,finish='radix',bins=65536)}"
time_configs() {  # CONFIG-DICT SHAPES
python3 -c "
import jax,jax.numpy as jnp,numpy as np,time
from tailjax import risk
from tailjax.risk.select import SelectConfig as C
cfgs=$1
for B,n in $2:
  x=jax.random.normal(jax.random.key(1),(B,n))
  for p in [1e-3,1e-2,1e-1]:
    ref=np.asarray(risk.cvar(x,p))
    fs={k:jax.jit(lambda x,c=c,p=p:risk.cvar_large(x,p,config=c)) for k,c in cfgs.items()}
    for f in fs.values(): jax.block_until_ready(f(x))
    t={k:[] for k in fs}
    for r in range(30):
      for k,f in fs.items():
        s=time.perf_counter(); jax.block_until_ready(f(x)); t[k].append(time.perf_counter()-s)
    err={k:float(np.max(np.abs(np.asarray(f(x))-ref)/np.abs(ref))) for k,f in fs.items()}
    print(B,n,p,' '.join(f'{k} {1e3*np.median(v):.3f}ms err {err[k]:.1e}' for k,v in t.items()),flush=True)
"
}
time_configs "$CFGS" "[(1000,100000),(100,1000000),(4,25000000)]" > batched_configs.log
time_configs "$CFGS_RADIX" "[(1000,100000),(100,1000000)]" > batched_radix.log
