// scripts/dev-services' view of the Kafka cluster, through the Java admin client that ships
// with the broker (run as a single-file program: java -cp 'libs/*' KafkaCheck.java ...).
//
//   KafkaCheck BOOTSTRAP BROKERS TIMEOUT_S   wait until BROKERS brokers are in the cluster
//                                            metadata (exit 0), or fail after TIMEOUT_S (exit 1)
//   KafkaCheck BOOTSTRAP 0 TIMEOUT_S         print the brokers and the controller once
import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class KafkaCheck {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "4000");
        int expected = Integer.parseInt(args[1]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[2]) * 1000;
        String last = "no answer";
        try (Admin admin = Admin.create(props)) {
            while (true) {
                try {
                    DescribeClusterResult cluster = admin.describeCluster();
                    var nodes = cluster.nodes().get();
                    String ids = nodes.stream().map(n -> Integer.toString(n.id())).sorted()
                        .collect(Collectors.joining(","));
                    last = nodes.size() + " broker(s) [" + ids + "], controller "
                        + cluster.controller().get().id();
                    if (nodes.size() >= expected) {
                        System.out.println(last);
                        return;
                    }
                } catch (Exception e) {
                    last = e.getClass().getSimpleName() + ": " + e.getMessage();
                }
                if (System.currentTimeMillis() >= deadline) {
                    System.err.println(last);
                    System.exit(1);
                }
                Thread.sleep(500);
            }
        }
    }
}
