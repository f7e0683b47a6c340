// A JVM fatal error: a native write through Unsafe to an unmapped address. HotSpot's signal
// handler writes hs_err_pid<pid>.log into the working directory and aborts.
import java.lang.reflect.Field;

public class PutLong {
    public static void main(String[] args) throws Exception {
        Field f = Class.forName("sun.misc.Unsafe").getDeclaredField("theUnsafe");
        f.setAccessible(true);
        sun.misc.Unsafe unsafe = (sun.misc.Unsafe) f.get(null);
        unsafe.putLong(16L, 42L);
    }
}
