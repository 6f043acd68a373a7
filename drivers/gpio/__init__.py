"""The machine's GPIO: relay, LEDs, buzzer and debounced inputs, on RPi.GPIO or a peer."""
