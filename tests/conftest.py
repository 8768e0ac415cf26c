pytest_plugins = ["fixtures.kafka", "fixtures.triton", "fixtures.worker", "fixtures.api"]
