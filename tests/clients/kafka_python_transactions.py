"""kafka-python's transactional producer against strand, which does not support transactions:
init_transactions() must fail at once with a clear error, not retry until its 60 s timeout.
Prints "ok <seconds>" on success."""
import sys
import time

from kafka import KafkaProducer
from kafka.errors import KafkaError

addr = sys.argv[1]
producer = KafkaProducer(bootstrap_servers=addr, transactional_id="tx-1", enable_idempotence=True,
                         max_block_ms=60000)
started = time.monotonic()
try:
    producer.init_transactions()
except KafkaError as e:
    took = time.monotonic() - started
    if took > 10:
        print(f"init_transactions failed only after {took:.1f} s: {e!r}")
        sys.exit(1)
    print(f"ok {took:.0f}")
    sys.exit(0)
print("init_transactions succeeded, but strand has no transaction coordinator")
sys.exit(1)
