package dev.herald.peer;

import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.common.TopicPartition;

import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.context.event.EventListener;
import org.springframework.kafka.config.KafkaListenerEndpointRegistry;
import org.springframework.kafka.listener.ConcurrentMessageListenerContainer;
import org.springframework.kafka.listener.ConsumerAwareRebalanceListener;
import org.springframework.kafka.listener.MessageListenerContainer;
import org.springframework.stereotype.Component;

/**
 * Prints the two start-up lines the benchmark waits for on stdout:
 * {@code herald-peer: started} once the context is up, and
 * {@code herald-peer: partitions assigned <n>} once every consumer of every listener
 * container (main, retry and dead-letter topics) holds its assignment, n being the
 * total number of partitions assigned. Spring Boot applies this rebalance listener
 * to the auto-configured container factory.
 */
@Component
public class StartupReporter implements ConsumerAwareRebalanceListener {

	private final ObjectProvider<KafkaListenerEndpointRegistry> registry;

	/** Consumers whose last rebalance callback was an assignment, with their assignment. */
	private final Map<Consumer<?, ?>, Set<TopicPartition>> assigned = new HashMap<>();

	/** Consumers that have given up partitions and wait for their new assignment. */
	private final Set<Consumer<?, ?>> rebalancing = new HashSet<>();

	private boolean reported;

	public StartupReporter(ObjectProvider<KafkaListenerEndpointRegistry> registry) {
		this.registry = registry;
	}

	@EventListener(ApplicationReadyEvent.class)
	public void started() {
		print("herald-peer: started");
	}

	@Override
	public synchronized void onPartitionsRevokedBeforeCommit(Consumer<?, ?> consumer,
			Collection<TopicPartition> partitions) {
		this.rebalancing.add(consumer);
	}

	@Override
	public synchronized void onPartitionsLost(Consumer<?, ?> consumer, Collection<TopicPartition> partitions) {
		this.rebalancing.add(consumer);
	}

	@Override
	public synchronized void onPartitionsAssigned(Consumer<?, ?> consumer, Collection<TopicPartition> partitions) {
		this.rebalancing.remove(consumer);
		this.assigned.put(consumer, Set.copyOf(consumer.assignment()));
		if (!this.reported && this.rebalancing.isEmpty() && this.assigned.size() >= expectedConsumers()) {
			this.reported = true;
			print("herald-peer: partitions assigned " + this.assigned.values().stream().mapToInt(Set::size).sum());
		}
	}

	private int expectedConsumers() {
		int consumers = 0;
		for (MessageListenerContainer container : this.registry.getObject().getListenerContainers()) {
			consumers += (container instanceof ConcurrentMessageListenerContainer<?, ?> concurrent)
					? concurrent.getConcurrency() : 1;
		}
		return consumers;
	}

	private static void print(String line) {
		System.out.println(line);
		System.out.flush();
	}

}
